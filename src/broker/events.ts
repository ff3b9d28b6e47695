/**
 * Policy events → trace spans. The events keep the spec's "Policy denial" JSON shape
 * (`command`, `reason`, `pattern`, `policy_id`, `session_id`); the trace's Span schema names the
 * command `cmd` and needs a span id, so this is the one place that maps one onto the other.
 */
import type { PolicyEvent, SpanInput } from "../contract/index.ts";
import { newSpanId } from "../contract/index.ts";

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
