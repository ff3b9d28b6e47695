/**
 * Trace spans (spec section 3 "Unified Agent-Trace Spans" and "JSONL & Span Schema Examples"):
 * one JSON object per line in `~/.substrate/trace.jsonl`. Field names are the spec's, byte for
 * byte; every line the writer emits validates against `Span`.
 *
 * A command is one span id with two lines: `command_start` (no exit yet) then
 * `command_complete` (exit, duration, scopes, fs diff, replay context). Other event types are
 * single lines. Extensions beyond the spec are marked "ours".
 */
import { z } from "zod";
import { SpanId, WorldId } from "./common.ts";
import { FsDiff, WorldBackendName } from "./world.ts";
import { EgressEvent } from "./net.ts";

export const SpanEventType = z.enum([
  "command_start",
  "command_complete",
  /** shell builtins (`cd`, `export`) that never reach a world (broker acceptance list) */
  "builtin_command",
  /** a command the policy denied (spec JSON example: reason + pattern) */
  "policy_denied",
  /** observe mode: the policy would have denied, the command ran anyway */
  "policy_violation",
  /** egress budget exhausted (spec: `trace::rate_limit`) */
  "rate_limit",
  /** API budget exhausted: max_execs / max_runtime_ms (spec: `trace::budget_exceeded`) */
  "budget_exceeded",
  /** ours: an approval prompt was answered (reason = once|session|always|deny) */
  "approval",
  /** ours: `substrate replay` re-ran `replay_of` in a fresh world (exit + fs_diff of the re-run) */
  "replay",
  /** ours (issue 15): one egress decision of the world's gateway (field `egress`) */
  "egress",
]);
export type SpanEventType = z.infer<typeof SpanEventType>;

export const SpanComponent = z.enum(["shell", "shim", "broker", "world", "api"]);
export type SpanComponent = z.infer<typeof SpanComponent>;

/** `sha256:<64 hex>` */
export const Sha256 = z.string().regex(/^sha256:[0-9a-f]{64}$/, "expected sha256:<64 hex>");

/** What replay needs to rebuild the original context (spec ReplayContext). Never env values. */
export const ReplayContext = z.strictObject({
  /** PATH at the time (not a secret; replay restores it) */
  path: z.string().nullable(),
  /** hash of the whole environment (names and values); the values themselves are never stored */
  env_hash: Sha256,
  /** octal string, e.g. "0022" */
  umask: z.string().regex(/^0[0-7]{3}$/, 'expected an octal umask such as "0022"'),
  /** LC_ALL, else LANG; null when neither is set */
  locale: z.string().nullable(),
  cwd: z.string().startsWith("/", "cwd must be absolute"),
  policy_id: z.string().nullable(),
  /** git short hash of the policy file (`-dirty.<sha8>` when modified), else `sha256:<hex16>` */
  policy_commit: z.string().nullable(),
  /** build version of the world agent, `<version>+<agent_hash>` */
  world_image_version: z.string().nullable(),
});
export type ReplayContext = z.infer<typeof ReplayContext>;

export const Span = z.strictObject({
  /** RFC 3339 UTC with milliseconds */
  ts: z.iso.datetime({ offset: true }),
  event_type: SpanEventType,
  session_id: z.string().min(1),
  span_id: SpanId,
  parent_span: SpanId.optional(),
  component: SpanComponent,
  world_id: WorldId.optional(),
  world_backend: WorldBackendName.optional(),
  policy_id: z.string().optional(),
  policy_commit: z.string().optional(),
  agent_id: z.string().min(1).default("human"),
  cwd: z.string().optional(),
  /** redacted before writing (see src/trace/redact.ts) */
  cmd: z.string().optional(),
  exit: z.number().int().optional(),
  pty: z.boolean().optional(),
  scopes_used: z.array(z.string()).optional(),
  fs_diff: FsDiff.optional(),
  /** short form used instead of/next to fs_diff for huge diffs: "12 dirs, 54 files" */
  fs_diff_summary: z.string().optional(),
  tree_hash: Sha256.optional(),
  egress_bytes: z.number().int().nonnegative().optional(),
  duration_ms: z.number().nonnegative().optional(),
  replay_context: ReplayContext.optional(),
  /** policy_denied / policy_violation / rate_limit / budget_exceeded: why */
  reason: z.string().optional(),
  /** policy_denied: the pattern that matched */
  pattern: z.string().optional(),
  /** ours, event `replay`: the span that was replayed */
  replay_of: SpanId.optional(),
  /** ours (issue 15), events `egress` and egress `rate_limit`: the gateway's decision record */
  egress: EgressEvent.optional(),
});
export type Span = z.infer<typeof Span>;
/** What callers hand to `appendSpan`: defaults (agent_id) may be left out. */
export type SpanInput = z.input<typeof Span>;

/** `substrate replay --json`: what matched and what differed. */
const DiffSide = z.strictObject({
  writes: z.array(z.string()),
  mods: z.array(z.string()),
  deletes: z.array(z.string()),
});

export const ReplayReport = z.strictObject({
  span_id: SpanId,
  /** the span recorded for the re-run (event `replay`), when one was written */
  replay_span_id: SpanId.optional(),
  reproduced: z.boolean(),
  cmd: z.string(),
  exit: z.strictObject({ original: z.number().int().nullable(), replay: z.number().int(), match: z.boolean() }),
  fs_diff: z.strictObject({
    /** false when the original span carries no diff to compare with */
    compared: z.boolean(),
    match: z.boolean(),
    original_summary: z.string(),
    replay_summary: z.string(),
    /** top-N paths only in the original / only in the replay, per kind */
    only_in_original: DiffSide,
    only_in_replay: DiffSide,
    tree_hash: z.strictObject({ original: z.string().nullable(), replay: z.string().nullable() }),
  }),
  /** drift and other warnings, e.g. "Policy has changed since span was recorded" */
  warnings: z.array(z.string()),
  world_id: WorldId.optional(),
  /** what the re-run printed (utf-8, each cut at 4 KiB); never stored in the trace */
  output: z.strictObject({ stdout: z.string(), stderr: z.string(), truncated: z.boolean() }).optional(),
});
export type ReplayReport = z.infer<typeof ReplayReport>;

/** `substrate replay --policy FILE`: would this policy have allowed it? (no execution) */
export const PolicyCheckResult = z.strictObject({
  span_id: SpanId,
  ts: z.string(),
  cmd: z.string(),
  cwd: z.string(),
  decision: z.enum(["allow", "deny", "isolate", "approve"]),
  reason: z.string().optional(),
  pattern: z.string().optional(),
  /** what actually happened when the span ran */
  recorded: z.enum(["ran", "denied"]),
});
export type PolicyCheckResult = z.infer<typeof PolicyCheckResult>;
