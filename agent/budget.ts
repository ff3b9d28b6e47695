/**
 * The world agent's budget enforcement (spec section 4: "world-agent is the final
 * authority"). Wraps the shared tracker (src/api/budget.ts) and records every refusal as a
 * `rate_limit` span (spec acceptance: "Budget exhaustion returns 429-like error +
 * `rate_limit` span"). The span id is named in the 429's hint so a caller can fetch it
 * with `GET /v1/trace/:span_id`.
 */
import { newSpanId, type Budget } from "../src/contract/index.ts";
import { BudgetTracker, type BudgetLease } from "../src/api/budget.ts";
import { appendSpanSync } from "../src/trace/writer.ts";

export interface BudgetRequest {
  agent_id: string;
  budget?: Budget;
  cmd: string;
  cwd?: string;
  world_id?: string;
}

export class AgentBudgets {
  readonly tracker = new BudgetTracker();
  /** One session id for the spans this agent process writes on its own. */
  private readonly sessionId = `ses_${Bun.randomUUIDv7()}`;

  constructor(private readonly log: (msg: string) => void = () => {}) {}

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
    });
  }

  /** Network module hook: egress bytes attributed to an agent. */
  recordEgress(agentId: string, bytes: number): void {
    this.tracker.recordEgress(agentId, bytes);
  }
}
