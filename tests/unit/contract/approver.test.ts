/** Round trip of the approver channel and agent-token schemas (src/contract/approver.ts, issues 18.5 and 14.6). */
import { expect, test } from "bun:test";
import { AgentTokensFile, ApproverAnswer, ApproverResult, PendingApprovals } from "../../../src/contract/approver.ts";

const id = "apr_01a201cc-48ac-717a-bf2d-ef524a961adc";
const pending = {
  approvals: [
    { approval_id: id, kind: "scopes", uid: 1000, agent_id: "claude", command: "request_scopes net:example.com", cwd: "/", reason: "agent claude requests scopes", scopes: ["net:example.com"], policy_id: "api-scopes", choices: ["once", "session", "always", "deny"], requested_at: "2026-12-04T19:00:00.000Z" },
    { approval_id: id, kind: "policy", uid: 0, command: "touch x", cwd: "/p", reason: "needs approval", policy_id: "default", choices: ["once", "deny"], requested_at: "2026-12-04T19:00:00.000Z", diff_preview: "writes 1 file" },
  ],
};

test("PendingApprovals round-trips; unknown fields and bad ids are refused", () => {
  expect(PendingApprovals.parse(JSON.parse(JSON.stringify(pending)))).toEqual(pending as never);
  expect(PendingApprovals.safeParse({ approvals: [{ ...pending.approvals[0], extra: 1 }] }).success).toBe(false);
  expect(PendingApprovals.safeParse({ approvals: [{ ...pending.approvals[0], approval_id: "x" }] }).success).toBe(false);
  expect(PendingApprovals.safeParse({ approvals: [{ ...pending.approvals[0], uid: -1 }] }).success).toBe(false);
});

test("ApproverAnswer / ApproverResult round-trip", () => {
  expect(ApproverAnswer.parse({ choice: "session" })).toEqual({ choice: "session" });
  expect(ApproverAnswer.safeParse({ choice: "maybe" }).success).toBe(false);
  const r = { approval_id: id, choice: "once", kind: "scopes", agent_id: "a", granted: ["exec:git"] };
  expect(ApproverResult.parse(JSON.parse(JSON.stringify(r)))).toEqual(r as never);
  expect(ApproverResult.parse({ approval_id: id, choice: "deny", kind: "policy", command: "rm x" }).command).toBe("rm x");
});

test("AgentTokensFile: defaults, budgets, duplicates refused, short tokens refused", () => {
  expect(AgentTokensFile.parse({})).toEqual({ require_token: false, agents: [] });
  const f = { require_token: true, agents: [{ agent_id: "bot", token: "t".repeat(32), budget: { max_execs: 3 } }] };
  expect(AgentTokensFile.parse(JSON.parse(JSON.stringify(f)))).toEqual(f);
  expect(AgentTokensFile.safeParse({ agents: [{ agent_id: "bot", token: "short" }] }).success).toBe(false);
  expect(AgentTokensFile.safeParse({ agents: [f.agents[0], { ...f.agents[0], token: "u".repeat(32) }] }).success).toBe(false); // same agent twice
  expect(AgentTokensFile.safeParse({ agents: [f.agents[0], { ...f.agents[0], agent_id: "bot2" }] }).success).toBe(false); // same token twice
  expect(AgentTokensFile.safeParse({ agents: [{ ...f.agents[0], budget: { max_execs: -1 } }] }).success).toBe(false);
});
