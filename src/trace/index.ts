/**
 * Trace spans: writing (append-only JSONL, rotation, redaction), reading, replay support.
 * See docs/TRACE.md. Used by the host CLI (`substrate -c`, shell, shims, replay) and the
 * world agent (API executes): both write the same schema to the same kind of file.
 */
export {
  appendSpan,
  appendSpanSync,
  serializeSpan,
  traceFilePath,
  TraceWriter,
  TraceWriteError,
  DEFAULT_KEEP,
  DEFAULT_MAX_BYTES,
  type TraceWriterOptions,
} from "./writer.ts";
export {
  readSpans,
  findSpan,
  spanEvents,
  followSpans,
  traceFiles,
  cmdMatcher,
  spanMatches,
  parseSpanLine,
  type SpanFilter,
  type ReadStats,
} from "./reader.ts";
export { redactCmd, isRedacted, REDACTED, REDACTION_RULES } from "./redact.ts";
export {
  buildReplayContext,
  envHash,
  currentUmask,
  policyCommit,
  worldImageVersion,
  type ReplayContextInput,
} from "./context.ts";
export { newSpanId, newSessionId, isSpanId, SPAN_ID_RE } from "../contract/ids.ts";
// The span context (src/trace/span.ts) is the one reader of SUBSTRATE_SESSION_ID / SUBSTRATE_SPAN_ID.
export { SpanContext, currentSessionId, parentSpanFromEnv, type SpanEnv } from "./span.ts";
export {
  replaySpan,
  replayRequest,
  compareFsDiff,
  driftWarnings,
  summarizeDiff,
  formatReplayReport,
  checkSpansAgainstPolicy,
  ReplayError,
  POLICY_DRIFT,
  IMAGE_DRIFT,
  type ReplayWorld,
  type ReplayOptions,
  type DriftInput,
  type PolicyDecision,
  type PolicyEvaluate,
} from "./replay.ts";
export { CommandSpan, recordExecuteSpan, type CommandSpanInput, type CommandResult } from "./command-span.ts";
