/**
 * Approvals over the agent API (for the API issue to mount): an execute whose line needs
 * approval gets a 409 `ApprovalRequiredBody`; the caller answers with `ApprovalAnswer`
 * on the approver channel (`substrate approve`, src/api/approver.ts — never on the API socket
 * the asking client uses, issue 18.5) and the client retries the execute.
 *
 *   const r = approvals.decide(cmd, cwd, loaded, sessionId);   // before executing
 *   if (r.kind === "approval_required") return c.json(r.body, 409);
 *   ...
 *   approvals.answer(answer);                                   // the approver channel
 */
import type { ApprovalAnswer, ApprovalRequest, ApprovalRequiredBody, PolicyEvent, Restriction } from "../contract/policy.ts";
import type { ApprovalStore } from "./approvals.ts";
import { evaluate } from "./evaluate.ts";
import type { LoadedPolicy } from "./load.ts";

const PENDING_TTL_MS = 15 * 60 * 1000;

export type ApiDecision =
  | { kind: "run"; events: PolicyEvent[] }
  | { kind: "run_isolated"; restrictions: Restriction[]; events: PolicyEvent[] }
  | { kind: "deny"; reason: string; pattern: string | null; events: PolicyEvent[] }
  | { kind: "approval_required"; body: ApprovalRequiredBody; events: PolicyEvent[] };

export class ApiApprovals {
  private readonly pending = new Map<string, { request: ApprovalRequest; hash: string; sessionId: string | null; at: number }>();
  /** "once" answers: one execute of exactly this key may run */
  private readonly once = new Map<string, number>();

  constructor(private readonly store: ApprovalStore) {}

  decide(cmd: string, cwd: string, loaded: LoadedPolicy, sessionId: string | null, component: "api" | "shell" = "api"): ApiDecision {
    const p = loaded.policy;
    this.store.noteSession(sessionId, p.id, p.hash);
    const base = { ts: new Date().toISOString(), command: cmd, policy_id: p.id, cwd, component, policy_commit: loaded.commit, ...(sessionId ? { session_id: sessionId } : {}) };
    const d = evaluate(cmd, cwd, p);
    if (d.kind === "allow") return { kind: "run", events: [] };
    if (d.kind === "allow_with_restrictions") return { kind: "run_isolated", restrictions: d.restrictions, events: [] };
    if (d.kind === "deny") {
      if (p.mode === "observe") return { kind: "run", events: [{ ...base, event_type: "policy_violation", reason: d.reason, pattern: d.pattern, would: "deny" }] };
      return { kind: "deny", reason: d.reason, pattern: d.pattern, events: [{ ...base, event_type: "policy_denied", reason: d.reason, pattern: d.pattern }] };
    }
    if (p.mode === "observe")
      return { kind: "run", events: [{ ...base, event_type: "policy_violation", reason: d.reason, pattern: d.pattern, would: "approval_required" }] };
    const onceKey = JSON.stringify([d.key, p.hash]);
    if (this.once.has(onceKey)) {
      this.once.delete(onceKey);
      return { kind: "run", events: [{ ...base, event_type: "approval", reason: "once", source: "cache" }] };
    }
    const cached = this.store.lookup(d.key, p.hash, sessionId);
    if (cached) return { kind: "run", events: [{ ...base, event_type: "approval", reason: cached, source: "cache" }] };
    if (!p.doc.approval.interactive) {
      const reason = `${d.reason}; approval.interactive is false, so it cannot be approved`;
      return { kind: "deny", reason, pattern: d.pattern, events: [{ ...base, event_type: "policy_denied", reason, pattern: d.pattern }] };
    }
    this.prune();
    const request: ApprovalRequest = {
      approval_id: `apr_${Bun.randomUUIDv7()}`,
      policy_id: p.id,
      command: cmd,
      cwd,
      reason: d.reason,
      pattern: d.pattern,
      key: d.key,
      choices: ["once", "session", "always", "deny"],
    };
    this.pending.set(request.approval_id, { request, hash: p.hash, sessionId, at: Date.now() });
    return {
      kind: "approval_required",
      body: {
        error: { code: "approval_required", message: `${d.reason}: ${cmd}`, hint: `answer with {"approval_id": "${request.approval_id}", "choice": "once|session|always|deny"}, then retry` },
        approval: request,
      },
      events: [],
    };
  }

  /** Record an answer; returns the request it answered, or null for an unknown/expired id. */
  answer(a: ApprovalAnswer): ApprovalRequest | null {
    this.prune();
    const p = this.pending.get(a.approval_id);
    if (!p) return null;
    this.pending.delete(a.approval_id);
    if (a.choice === "once") this.once.set(JSON.stringify([p.request.key, p.hash]), Date.now());
    else if (a.choice === "session" || a.choice === "always") this.store.record(p.request.key, p.hash, a.choice, p.sessionId);
    return p.request;
  }

  /** Issue 18.5 (RELIABILITY): what is waiting for an answer (the approver channel lists it). */
  pendingRequests(): { request: ApprovalRequest; at: number }[] {
    this.prune();
    return [...this.pending.values()].map((p) => ({ request: p.request, at: p.at }));
  }

  private prune(): void {
    const now = Date.now();
    for (const [id, p] of this.pending) if (now - p.at > PENDING_TTL_MS) this.pending.delete(id);
    for (const [k, at] of this.once) if (now - at > PENDING_TTL_MS) this.once.delete(k);
  }
}
