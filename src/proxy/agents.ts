/**
 * RELIABILITY helper (issues 14.6 and 18.5), the host proxy's side:
 *
 * 1. Agent tokens: `~/.substrate/agent-tokens.json` (or `substrate proxy --agent-tokens FILE`;
 *    0600, ours) gives each agent its own bearer token. A request that carries one IS that
 *    agent: every agent_id it names must be the token's (else 403 `forbidden`), and its budget
 *    is the token's (a request's own budget can only tighten it), kept under the token's key —
 *    so renaming cannot mint a fresh budget. An agent_id that has a token cannot be used
 *    without it; `require_token: true` refuses executes, streams and scope requests that carry
 *    no agent token at all.
 * 2. The proxy's approver channel: its policy approvals (execute → 409) are listed and
 *    answered on `<socket>-approve.sock` (src/api/approver.ts), never on the proxy's API socket.
 */
import { readFileSync, statSync } from "node:fs";
import { timingSafeEqual } from "node:crypto";
import { join } from "node:path";
import { AgentTokensFile, type AgentTokenEntry } from "../contract/approver.ts";
import type { Budget } from "../contract/execute.ts";
import type { ApproverSource } from "../api/approver.ts";
import { ApiError } from "../api/service.ts";
import { tightenBudget } from "../api/budget.ts";
import type { ApiApprovals } from "../broker/api.ts";
import { substrateHome } from "../config.ts";

export const defaultAgentTokensPath = (env: NodeJS.ProcessEnv = process.env): string => join(substrateHome(env), "agent-tokens.json");

/** The agent a request is bound to (by its agent token). */
export interface BoundAgent {
  agent_id: string;
  budget?: Budget;
}

export class AgentTokensError extends Error {
  override name = "AgentTokensError";
}

export class AgentTokens {
  private readonly entries: { buf: Buffer; entry: AgentTokenEntry }[];
  private readonly owned: Set<string>;
  constructor(readonly file: AgentTokensFile = { require_token: false, agents: [] }) {
    this.entries = file.agents.map((entry) => ({ buf: Buffer.from(entry.token), entry }));
    this.owned = new Set(file.agents.map((a) => a.agent_id));
  }

  get size(): number {
    return this.entries.length;
  }

  /** Read and check the file: ours, not readable by others, valid. Missing + not explicit → none. */
  static load(path: string, explicit = false): AgentTokens {
    let st;
    try {
      st = statSync(path);
    } catch {
      if (explicit) throw new AgentTokensError(`agent token file ${path} does not exist`);
      return new AgentTokens();
    }
    const uid = process.getuid?.() ?? 0;
    if (st.uid !== uid) throw new AgentTokensError(`agent token file ${path} belongs to uid ${st.uid}, not to us (uid ${uid})`);
    if (st.mode & 0o077) throw new AgentTokensError(`agent token file ${path} is readable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
    let data: unknown;
    try {
      data = JSON.parse(readFileSync(path, "utf8"));
    } catch (e) {
      throw new AgentTokensError(`agent token file ${path} is not valid JSON: ${(e as Error).message}`);
    }
    const r = AgentTokensFile.safeParse(data);
    if (!r.success) throw new AgentTokensError(`agent token file ${path}: ${r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
    return new AgentTokens(r.data);
  }

  /** The agent whose token this is (constant time over every token), or null. */
  match(token: string): BoundAgent | null {
    const given = Buffer.from(token);
    let hit: AgentTokenEntry | null = null;
    for (const { buf, entry } of this.entries) if (buf.length === given.length && timingSafeEqual(buf, given)) hit = entry;
    return hit ? { agent_id: hit.agent_id, ...(hit.budget ? { budget: hit.budget } : {}) } : null;
  }

  /**
   * The budget and the budget key for a request naming `agentId` (issue 14.6). Throws 403 when
   * a bound request names another agent, an unbound one names an agent that has a token, or a
   * token is required.
   */
  bind(agentId: string, budget: Budget | undefined, bound: BoundAgent | null | undefined): { budget?: Budget; principal?: string } {
    if (bound) {
      if (agentId !== bound.agent_id)
        throw new ApiError("forbidden", `this agent token belongs to agent ${bound.agent_id}; it cannot act as ${JSON.stringify(agentId.slice(0, 80))}`, `send agent_id ${JSON.stringify(bound.agent_id)}`);
      const b = tightenBudget(bound.budget, budget);
      return { ...(b ? { budget: b } : {}), principal: `token:${bound.agent_id}` };
    }
    if (this.owned.has(agentId))
      throw new ApiError("forbidden", `agent ${JSON.stringify(agentId.slice(0, 80))} has an agent token; requests for it must carry it`, "send Authorization: Bearer <its token>");
    if (this.file.require_token)
      throw new ApiError("forbidden", "this proxy requires an agent token", "send Authorization: Bearer <token> from ~/.substrate/agent-tokens.json");
    return budget ? { budget } : {};
  }
}

/** The proxy's policy approvals as an approver source: all asked by the proxy's own uid. */
export function policyApprovals(approvals: ApiApprovals, proxyUid: number): ApproverSource {
  const mine = (uid: number) => uid === 0 || uid === proxyUid;
  return {
    list: (uid) =>
      mine(uid)
        ? approvals.pendingRequests().map(({ request: r, at }) => ({
            approval_id: r.approval_id,
            kind: "policy" as const,
            uid: proxyUid,
            command: r.command,
            cwd: r.cwd,
            reason: r.reason,
            policy_id: r.policy_id,
            choices: r.choices,
            requested_at: new Date(at).toISOString(),
            ...(r.diff_preview ? { diff_preview: r.diff_preview } : {}),
          }))
        : [],
    answer: (id, choice, uid) => {
      if (!mine(uid)) return null;
      const r = approvals.answer({ approval_id: id, choice });
      return r ? { approval_id: id, choice, kind: "policy", command: r.command } : null;
    },
  };
}
