/**
 * The world agent's budget enforcement (spec section 4: "world-agent is the final
 * authority"). Wraps the shared tracker (src/api/budget.ts) and records every refusal as a
 * `rate_limit` span (spec acceptance: "Budget exhaustion returns 429-like error +
 * `rate_limit` span"). The span id is named in the 429's hint so a caller can fetch it
 * with `GET /v1/trace/:span_id`.
 *
 * Issue 14.6: keyed by (caller uid, agent_id) — the uid is the socket peer's (SO_PEERCRED),
 * so another user naming its agent alike neither shares nor resets this user's budget. What a
 * client of the SAME uid can still do: send a new agent_id (a fresh budget) — budgets a client
 * declares for itself are a self-limit; budgets an operator sets are bound to an agent token
 * at the host proxy (src/proxy/agents.ts), where renaming is refused. docs/API.md "Budgets".
 */
import { newSessionId, newSpanId, type Budget } from "../src/contract/index.ts";
import { BudgetTracker, type BudgetLease } from "../src/api/budget.ts";
import { appendSpanSync } from "../src/trace/writer.ts";

export interface BudgetRequest {
  agent_id: string;
  budget?: Budget;
  cmd: string;
  cwd?: string;
  world_id?: string;
  /** Issue 14.6: the caller's uid (SO_PEERCRED): budgets are keyed by (uid, agent_id). */
  uid?: number;
}

export class AgentBudgets {
  readonly tracker = new BudgetTracker();
  /** One session id for the spans this agent process writes on its own. */
  private readonly sessionId = newSessionId();

  constructor(private readonly log: (msg: string) => void = () => {}) {}

  /** The tracker key of a caller uid (issue 14.6). */
  principal(uid: number | undefined): string {
    return `uid:${uid ?? process.getuid?.() ?? 0}`;
  }

  /** Take one exec or throw BudgetExceeded (429) after writing the `rate_limit` span. */
  acquire(r: BudgetRequest): BudgetLease {
    return this.tracker.acquire(r.agent_id, r.budget, (ex) => {
      const spanId = newSpanId();
      try {
        appendSpanSync({
          ts: new Date().toISOString(),
          event_type: "rate_limit",
          session_id: this.sessionId,
          span_id: spanId,
          component: "api",
          agent_id: r.agent_id,
          cmd: r.cmd,
          ...(r.cwd ? { cwd: r.cwd } : {}),
          ...(r.world_id ? { world_id: r.world_id } : {}),
          reason: `${ex.limit}: ${ex.used} of ${ex.max} used`,
        });
      } catch (e) {
        // A trace that cannot be written must not turn a 429 into a 500.
        this.log(`cannot write rate_limit span: ${(e as Error).message}`);
        return `budget ${ex.limit} is spent; it resets when the world agent restarts`;
      }
      return `rate_limit span ${spanId} (GET /v1/trace/${spanId}); budget ${ex.limit} is spent; it resets when the world agent restarts`;
    }, this.principal(r.uid));
  }

  /** Network module hook: egress bytes attributed to an agent. */
  recordEgress(agentId: string, bytes: number, uid?: number): void {
    this.tracker.recordEgress(agentId, bytes, this.principal(uid));
  }
}
