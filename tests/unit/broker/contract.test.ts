/** Round trip of every policy contract schema (parse → JSON → parse gives the same value). */
import { describe, expect, test } from "bun:test";
import {
  ApprovalAnswer,
  ApprovalRequest,
  ApprovalRequiredBody,
  ApprovalsFile,
  Decision,
  Policy,
  PolicyEvent,
  ProjectPolicySelection,
} from "../../../src/contract/index.ts";
import { DEFAULT_POLICY_YAML } from "../../../src/broker/default-policy.ts";

const rt = <T>(schema: { parse(x: unknown): T }, v: unknown): void => {
  const a = schema.parse(v);
  expect(schema.parse(JSON.parse(JSON.stringify(a)))).toEqual(a);
};
const KEY = { policy_id: "default", cwd_prefix: "/p", command_pattern: "npm publish" };
const APR = "apr_01936f3c-1234-7abc-8def-0123456789ab";

describe("policy contract round trips", () => {
  test("Policy: the spec example, with defaults filled in", () => {
    const p = Policy.parse(Bun.YAML.parse(DEFAULT_POLICY_YAML));
    expect(p.commands.allowed).toEqual([]);
    expect(p.approval.require_approval).toBe(false);
    rt(Policy, p);
    rt(Policy, { id: "x", name: "minimal" });
  });
  test("Decision: every kind", () => {
    rt(Decision, { kind: "allow" });
    rt(Decision, { kind: "allow_with_restrictions", restrictions: ["IsolatedWorld", "OverlayFS"], pattern: "npm install *" });
    rt(Decision, { kind: "deny", reason: "Command explicitly denied", pattern: "rm -rf /", rule: "commands.denied", sub_command: "rm -rf /" });
    rt(Decision, { kind: "deny", reason: "Command not explicitly allowed: x", pattern: null, rule: "commands.allowed" });
    rt(Decision, { kind: "approval_required", reason: "Command requires approval", pattern: "npm *", key: KEY });
    expect(() => Decision.parse({ kind: "allow_with_restrictions", restrictions: [], pattern: "x" })).toThrow();
  });
  test("approval over the API: request, 409 body, answer", () => {
    const req = { approval_id: APR, policy_id: "default", command: "npm publish", cwd: "/p", reason: "r", pattern: null, key: KEY, diff_preview: "writes 3 files under dist" };
    rt(ApprovalRequest, req);
    expect(ApprovalRequest.parse(req).choices).toEqual(["once", "session", "always", "deny"]);
    rt(ApprovalRequiredBody, { error: { code: "approval_required", message: "needs approval" }, approval: req });
    rt(ApprovalAnswer, { approval_id: APR, choice: "session" });
    expect(() => ApprovalAnswer.parse({ approval_id: "x", choice: "once" })).toThrow();
  });
  test("PolicyEvent: policy_denied is the spec's JSON example", () => {
    const spec = {
      ts: "2025-01-10T12:35:12.001Z",
      event_type: "policy_denied",
      command: "rm -rf /",
      reason: "Command explicitly denied",
      pattern: "rm -rf /",
      policy_id: "default",
      session_id: "v7_01JABC...",
    };
    expect(PolicyEvent.parse(spec)).toEqual(spec as never);
    rt(PolicyEvent, spec);
    rt(PolicyEvent, { ...spec, event_type: "policy_violation", would: "deny", component: "shim" });
    rt(PolicyEvent, { ts: spec.ts, event_type: "approval", command: "x", policy_id: "d", reason: "always", source: "prompt" });
  });
  test("ApprovalsFile", () => {
    rt(ApprovalsFile, {
      version: 1,
      entries: [{ ...KEY, policy_hash: "abc", scope: "session", session_id: "s", created_at: "2025-01-10T12:35:12.001Z" }],
      sessions: { s: { policy_id: "default", policy_hash: "abc" } },
    });
    rt(ApprovalsFile, { version: 1 });
  });
  test("ProjectPolicySelection: every way a selection is recorded", () => {
    rt(ProjectPolicySelection, { project: "/p", policy: "strict", recorded_at: "2026-12-04T18:00:00.000Z", via: "first_use", profile_file: "/p/.substrate-profile" });
    rt(ProjectPolicySelection, { project: "/p", policy: "default", recorded_at: "2026-12-04T18:00:00.000Z", via: "policy_use" });
    rt(ProjectPolicySelection, { project: "/p/sub", policy: "x", recorded_at: "2026-12-04T18:00:00.000Z", via: "tightened", profile_file: "/p/sub/.substrate-profile" });
    expect(() => ProjectPolicySelection.parse({ project: "rel", policy: "x", recorded_at: "t", via: "first_use" })).toThrow();
  });
});
