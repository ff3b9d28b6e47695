/**
 * Issue 18.5: the approver channel — a socket of its own (never the API socket) on which the
 * human lists pending approvals and answers them (`substrate approve`, src/cli/approve.ts;
 * server and client in src/api/approver.ts). Each peer sees and answers only the approvals of
 * its own uid (root: all).
 *
 *   GET  /v1/approvals                → PendingApprovals
 *   POST /v1/approvals/:approval_id   ApproverAnswer → ApproverResult
 */
import { z } from "zod";
import { ApprovalChoice } from "./policy.ts";
import { Budget } from "./execute.ts";

export const ApprovalId = z.string().regex(/^apr_[0-9a-f-]{36}$/, "expected apr_<uuidv7>");

export const PendingApproval = z.strictObject({
  approval_id: ApprovalId,
  /** scopes: the world agent's request_scopes; policy: a command the host proxy's policy gates */
  kind: z.enum(["scopes", "policy"]),
  /** the uid whose client asked (the approver must be that uid, or root) */
  uid: z.number().int().nonnegative(),
  agent_id: z.string().optional(),
  /** what is asked for, in one line ("request_scopes net:example.com", or the command line) */
  command: z.string(),
  cwd: z.string().startsWith("/"),
  reason: z.string(),
  /** scopes kind: the scopes asked for */
  scopes: z.array(z.string()).optional(),
  policy_id: z.string().optional(),
  choices: z.array(ApprovalChoice),
  requested_at: z.iso.datetime({ offset: true }),
  diff_preview: z.string().optional(),
});
export type PendingApproval = z.infer<typeof PendingApproval>;

export const PendingApprovals = z.strictObject({ approvals: z.array(PendingApproval) });
export type PendingApprovals = z.infer<typeof PendingApprovals>;

export const ApproverAnswer = z.strictObject({ choice: ApprovalChoice });
export type ApproverAnswer = z.infer<typeof ApproverAnswer>;

export const ApproverResult = z.strictObject({
  approval_id: ApprovalId,
  choice: ApprovalChoice,
  kind: z.enum(["scopes", "policy"]),
  agent_id: z.string().optional(),
  /** scopes: what was granted (empty for deny) */
  granted: z.array(z.string()).optional(),
  /** policy: the command the answer approved (the client retries it) */
  command: z.string().optional(),
});
export type ApproverResult = z.infer<typeof ApproverResult>;

// ---------------------------------------------------------------------------------------------
// Issue 14.6: agent tokens of the host proxy (`~/.substrate/agent-tokens.json`, 0600): each
// token IS one agent — requests that carry it act as that agent_id only, under the budget the
// operator wrote here (a request's own budget can only tighten it).

export const AgentTokenEntry = z.strictObject({
  agent_id: z.string().min(1).max(256),
  /** the bearer secret; at least 16 characters */
  token: z.string().min(16),
  budget: Budget.optional(),
});
export type AgentTokenEntry = z.infer<typeof AgentTokenEntry>;

export const AgentTokensFile = z
  .strictObject({
    /** true: executes, streams and scope requests without an agent token are refused (403) */
    require_token: z.boolean().default(false),
    agents: z.array(AgentTokenEntry).default([]),
  })
  .superRefine((f, ctx) => {
    const ids = new Set<string>();
    const toks = new Set<string>();
    for (const [i, a] of f.agents.entries()) {
      if (ids.has(a.agent_id)) ctx.addIssue({ code: "custom", path: ["agents", i, "agent_id"], message: `agent_id ${a.agent_id} appears twice` });
      if (toks.has(a.token)) ctx.addIssue({ code: "custom", path: ["agents", i, "token"], message: "the same token is given to two agents" });
      ids.add(a.agent_id);
      toks.add(a.token);
    }
  });
export type AgentTokensFile = z.infer<typeof AgentTokensFile>;
