/**
 * Per-agent budgets (spec section 4 `AgentBudgetTracker`): max_execs, max_runtime_ms,
 * max_egress_bytes. Shared by the world agent (the final authority, agent/budget.ts) and the
 * host proxy (src/proxy/): each keeps its own tracker, so neither can be bypassed by talking
 * to the other.
 *
 * Atomicity: JS runs one callback at a time and `acquire` is synchronous (check + decrement
 * with no await in between), so two concurrent executes can never both take the last exec —
 * the same guarantee the spec gets from AtomicU32.
 *
 * Semantics (recorded in docs/API.md):
 * - The first request of an agent that carries a `budget` sets it; later budgets can only
 *   tighten a limit (min of old and new), never loosen it — an agent cannot lift its own cap.
 * - max_execs counts executes and stream sessions started.
 * - max_runtime_ms is a total over the agent's commands: each command may run for what is
 *   left at its start and is killed when that runs out; its real duration is charged at exit.
 * - max_egress_bytes is charged by `recordEgress` (the network module's hook); once spent,
 *   the next execute is refused.
 * - Budgets live as long as the process that tracks them.
 * - Issue 14.6: an optional `principal` (who is authenticated: the agent's "uid:N", the proxy's
 *   agent token) namespaces the agent ids: the same agent_id under two principals is two budgets.
 */
import type { Budget, BudgetStatus } from "../contract/index.ts";
import { ApiError } from "./service.ts";

export type BudgetLimit = "max_execs" | "max_runtime_ms" | "max_egress_bytes";

export class BudgetExceeded extends ApiError {
  override name = "BudgetExceeded";
  constructor(
    readonly agentId: string,
    readonly limit: BudgetLimit,
    readonly used: number,
    readonly max: number,
    hint?: string,
  ) {
    super("rate_limited", `budget exhausted for agent ${agentId}: ${limit} (${used} of ${max} used)`, hint);
  }
}

interface AgentState {
  budget: Budget;
  execs: number;
  runtimeMs: number;
  egressBytes: number;
}

/** One command's claim on the budget; `settle` charges its real duration exactly once. */
export interface BudgetLease {
  agentId: string;
  /** Kill the command after this long (remaining runtime budget), when limited. */
  timeoutMs?: number;
  settle(elapsedMs: number): void;
}

const tighten = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined ? b : b === undefined ? a : Math.min(a, b);

/** The stricter of two budgets, limit by limit (undefined when neither limits anything). */
export function tightenBudget(a: Budget | undefined, b: Budget | undefined): Budget | undefined {
  if (!a) return b;
  if (!b) return a;
  const out: Budget = {};
  for (const k of ["max_execs", "max_runtime_ms", "max_egress_bytes"] as const) {
    const v = tighten(a[k], b[k]);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

export class BudgetTracker {
  private agents = new Map<string, AgentState>();

  private static key(agentId: string, principal?: string): string {
    return principal === undefined ? agentId : `${principal}\u0000${agentId}`;
  }

  private state(key: string, budget?: Budget): AgentState | undefined {
    let s = this.agents.get(key);
    if (budget && Object.keys(budget).length) {
      if (!s) {
        s = { budget: { ...budget }, execs: 0, runtimeMs: 0, egressBytes: 0 };
        this.agents.set(key, s);
      } else {
        s.budget = {
          max_execs: tighten(s.budget.max_execs, budget.max_execs),
          max_runtime_ms: tighten(s.budget.max_runtime_ms, budget.max_runtime_ms),
          max_egress_bytes: tighten(s.budget.max_egress_bytes, budget.max_egress_bytes),
        };
        for (const k of Object.keys(s.budget) as BudgetLimit[]) if (s.budget[k] === undefined) delete s.budget[k];
      }
    }
    return s;
  }

  /** Which limit is spent, if any (checked before a command starts). */
  private exhausted(s: AgentState): { limit: BudgetLimit; used: number; max: number } | null {
    const b = s.budget;
    if (b.max_execs !== undefined && s.execs >= b.max_execs) return { limit: "max_execs", used: s.execs, max: b.max_execs };
    if (b.max_runtime_ms !== undefined && s.runtimeMs >= b.max_runtime_ms)
      return { limit: "max_runtime_ms", used: s.runtimeMs, max: b.max_runtime_ms };
    if (b.max_egress_bytes !== undefined && s.egressBytes >= b.max_egress_bytes)
      return { limit: "max_egress_bytes", used: s.egressBytes, max: b.max_egress_bytes };
    return null;
  }

  /**
   * Check and take one exec, synchronously (see "Atomicity" above). Throws BudgetExceeded;
   * `onExceeded` runs first (span writing) and may return a hint for the error.
   */
  acquire(
    agentId: string,
    budget?: Budget,
    onExceeded?: (e: { limit: BudgetLimit; used: number; max: number }) => string | undefined,
    principal?: string,
  ): BudgetLease {
    const s = this.state(BudgetTracker.key(agentId, principal), budget);
    if (!s) return { agentId, settle: () => {} };
    const ex = this.exhausted(s);
    if (ex) throw new BudgetExceeded(agentId, ex.limit, ex.used, ex.max, onExceeded?.(ex));
    s.execs++;
    const timeoutMs = s.budget.max_runtime_ms === undefined ? undefined : Math.max(1, s.budget.max_runtime_ms - s.runtimeMs);
    let settled = false;
    return {
      agentId,
      timeoutMs,
      settle: (elapsedMs: number) => {
        if (settled) return;
        settled = true;
        s.runtimeMs += Math.max(0, Math.round(elapsedMs));
      },
    };
  }

  /** Hook for the network module: bytes an agent's commands sent out of the world. */
  recordEgress(agentId: string, bytes: number, principal?: string): void {
    const s = this.agents.get(BudgetTracker.key(agentId, principal));
    if (s && bytes > 0) s.egressBytes += bytes;
  }

  status(agentId: string, principal?: string): BudgetStatus | undefined {
    const s = this.agents.get(BudgetTracker.key(agentId, principal));
    if (!s) return undefined;
    const b = s.budget;
    const remaining: Budget = {};
    if (b.max_execs !== undefined) remaining.max_execs = Math.max(0, b.max_execs - s.execs);
    if (b.max_runtime_ms !== undefined) remaining.max_runtime_ms = Math.max(0, b.max_runtime_ms - s.runtimeMs);
    if (b.max_egress_bytes !== undefined) remaining.max_egress_bytes = Math.max(0, b.max_egress_bytes - s.egressBytes);
    const exhausted = (Object.keys(remaining) as BudgetLimit[]).filter((k) => remaining[k] === 0);
    return {
      agent_id: agentId,
      budget: { ...b },
      used: { execs: s.execs, runtime_ms: s.runtimeMs, egress_bytes: s.egressBytes },
      remaining,
      exhausted,
    };
  }
}
