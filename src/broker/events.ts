/**
 * Policy events → trace spans. The events keep the spec's "Policy denial" JSON shape
 * (`command`, `reason`, `pattern`, `policy_id`, `session_id`); the trace's Span schema names the
 * command `cmd` and needs a span id, so this is the one place that maps one onto the other.
 */
import { newSpanId } from "../contract/common.ts";
import type { PolicyEvent } from "../contract/policy.ts";
import type { SpanInput } from "../contract/span.ts";

export function policyEventToSpan(e: PolicyEvent, ids: { session_id: string; span_id?: string; parent_span?: string }): SpanInput {
  const span: SpanInput = {
    ts: e.ts,
    event_type: e.event_type,
    session_id: e.session_id ?? ids.session_id,
    span_id: ids.span_id ?? newSpanId(),
    component: e.component ?? "broker",
    policy_id: e.policy_id,
    cmd: e.command,
    reason: e.reason,
    ...(ids.parent_span ? { parent_span: ids.parent_span } : {}),
    ...(e.cwd !== undefined ? { cwd: e.cwd } : {}),
    ...(e.policy_commit !== undefined ? { policy_commit: e.policy_commit } : {}),
  };
  if ((e.event_type === "policy_denied" || e.event_type === "policy_violation") && e.pattern !== null) span.pattern = e.pattern;
  return span;
}

/**
 * Write the events of a decision to the trace (never fails the command: one warning instead).
 * The trace module is imported only when there is something to write (most commands: nothing).
 */
export async function recordPolicyEvents(events: readonly PolicyEvent[], stderr: { write(s: string): unknown } = process.stderr): Promise<void> {
  if (events.length === 0) return;
  try {
    const { appendSpanSync, currentSessionId, parentSpanFromEnv } = await import("../trace/index.ts");
    const session = currentSessionId();
    const parent = parentSpanFromEnv();
    for (const e of events) appendSpanSync(policyEventToSpan(e, { session_id: session, ...(parent ? { parent_span: parent } : {}) }));
  } catch (e) {
    stderr.write(`substrate: could not write policy events to the trace: ${(e as Error).message.split("\n")[0]}\n`);
  }
}
