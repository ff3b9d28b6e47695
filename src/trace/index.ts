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
export { newSpanId } from "../contract/common.ts";

/**
 * The session id for spans of this process: `SUBSTRATE_SESSION_ID` when an outer substrate
 * shell set it, else one `ses_<uuidv7>` per process.
 */
let processSession: string | undefined;
export function currentSessionId(env: Record<string, string | undefined> = process.env): string {
  if (env.SUBSTRATE_SESSION_ID) return env.SUBSTRATE_SESSION_ID;
  processSession ??= `ses_${Bun.randomUUIDv7()}`;
  return processSession;
}

/** `SUBSTRATE_SPAN_ID` of an enclosing command (nested `substrate -c`), as parent_span. */
export function parentSpanFromEnv(env: Record<string, string | undefined> = process.env): string | undefined {
  const p = env.SUBSTRATE_SPAN_ID;
  return p && /^spn_[0-9a-f-]{36}$/.test(p) ? p : undefined;
}
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
