/** Approvals over the API: 409 body (contract-valid), answer once / session / always / deny. */
import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import { ApiApprovals, ApprovalStore, loadEffectivePolicySync } from "../../../src/broker/index.ts";
import { ApprovalRequiredBody } from "../../../src/contract/policy.ts";
import { tempHome, type TempHome } from "./_helpers.ts";

let t: TempHome;
afterEach(() => t?.cleanup());

test("approval_required → answer → retry runs; once is consumed; always persists; deny asks again", () => {
  t = tempHome();
  t.write("default.yaml", "id: default\nname: d\nmode: enforce\ncommands:\n  require_approval: ['npm publish *']\n  denied: ['sudo *']\n");
  const loaded = loadEffectivePolicySync(t.home, { home: t.home });
  const store = new ApprovalStore(join(t.home, ".substrate", "approvals.json"));
  const api = new ApiApprovals(store);
  const cmd = "npm publish --tag next";

  const r1 = api.decide(cmd, t.home, loaded, null);
  expect(r1.kind).toBe("approval_required");
  if (r1.kind !== "approval_required") return;
  expect(ApprovalRequiredBody.parse(r1.body)).toEqual(r1.body);
  expect(r1.body.approval.key).toEqual({ policy_id: "default", cwd_prefix: t.home, command_pattern: cmd });

  expect(api.answer({ approval_id: r1.body.approval.approval_id, choice: "once" })?.command).toBe(cmd);
  expect(api.answer({ approval_id: r1.body.approval.approval_id, choice: "once" })).toBeNull(); // answered already
  expect(api.decide(cmd, t.home, loaded, null)).toMatchObject({ kind: "run", events: [{ event_type: "approval", reason: "once", source: "cache" }] });
  const r2 = api.decide(cmd, t.home, loaded, null);
  expect(r2.kind).toBe("approval_required"); // once was consumed

  if (r2.kind !== "approval_required") return;
  api.answer({ approval_id: r2.body.approval.approval_id, choice: "deny" });
  const r3 = api.decide(cmd, t.home, loaded, null);
  expect(r3.kind).toBe("approval_required");
  if (r3.kind !== "approval_required") return;
  api.answer({ approval_id: r3.body.approval.approval_id, choice: "always" });
  expect(api.decide(cmd, t.home, loaded, null).kind).toBe("run");
  expect(new ApiApprovals(new ApprovalStore(store.file)).decide(cmd, t.home, loaded, "other-session").kind).toBe("run");

  expect(api.decide("sudo id", t.home, loaded, null)).toMatchObject({ kind: "deny", pattern: "sudo *" });
});
