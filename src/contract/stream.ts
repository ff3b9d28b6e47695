/**
 * Agent API, issue 6: the `/v1/stream` WebSocket protocol, scope requests, budget status and
 * the host proxy's audit line. Shapes beyond the spec are marked "ours".
 *
 * `/v1/stream` (spec section 4, "PTY streaming with proper byte handling"):
 * - binary frames carry raw bytes, both ways: keystrokes/stdin to the command, terminal
 *   output (PTY) or stdout (pty: false) from it. Never re-encoded, so vim/fzf stay byte-clean.
 * - text frames carry one JSON control message each (`StreamClientMessage` /
 *   `StreamServerMessage`). The first client message is `start` or `attach` (ours).
 */
import { EgressSummary } from "./net.ts"; // issue 15 (EGRESS)
import { z } from "zod";
import { FsDiff } from "./world.ts";
import { ErrorCode, SpanId, WorldId } from "./common.ts";
import { Budget } from "./execute.ts";
import { WorldSpecInput } from "./world.ts";
import { ReplayContext } from "./span.ts";

const AbsPath = z
  .string()
  .startsWith("/", "must be an absolute path")
  .refine((s) => !s.includes("\0"), "must not contain NUL");

/** `pty_<uuidv7>` — one stream session (ours; needed to re-attach). */
export const StreamSessionId = z.string().regex(/^pty_[0-9a-f-]{36}$/, "expected pty_<uuidv7>");
export const newStreamSessionId = (): string => `pty_${Bun.randomUUIDv7()}`;

const Cols = z.number().int().min(1).max(1000);
const Rows = z.number().int().min(1).max(1000);

/** Signals a client may send (the rest have no business being forwarded). */
export const StreamSignalName = z.enum(["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGKILL", "SIGTSTP", "SIGCONT", "SIGWINCH", "SIGUSR1", "SIGUSR2"]);
export type StreamSignalName = z.infer<typeof StreamSignalName>;

/**
 * ours (issue 17, the CLI's fast path, src/cli/fast.ts): the host did not gate this command and
 * writes no span of it. The agent's gate is its only gate, and the agent writes the HOST's spans
 * of it — the policy events, `command_start`, `command_complete` under `span_id` — into `trace`
 * as the caller (agent/policyd.ts), as the host pipeline would have. Only a plain run qualifies:
 * a command the policy denies, asks about or isolates, or whose project's policy selection has a
 * notice to show, is refused before anything runs (the CLI then runs its own pipeline).
 */
export const HostSpan = z.strictObject({
  span_id: SpanId,
  session_id: z.string().min(1),
  parent_span: SpanId.optional(),
  component: z.literal("shell"),
  /** the caller's trace file (SUBSTRATE_TRACE, else under its ~/.substrate) */
  trace: AbsPath,
  /** the replay context's parts only the host knows (its env hash, umask, PATH, locale, build) */
  replay: ReplayContext.pick({ path: true, env_hash: true, umask: true, locale: true, world_image_version: true }),
});
export type HostSpan = z.infer<typeof HostSpan>;

export const StreamStart = z
  .strictObject({
    type: z.literal("start"),
    /** A shell string, run as `bash -c CMD` in the world. */
    cmd: z.string().min(1, "cmd must not be empty").optional(),
    /** ours: or an argv, exec'd directly (the interactive shell uses this). */
    argv: z.array(z.string()).min(1).optional(),
    cwd: AbsPath.optional(),
    env: z.record(z.string(), z.string()).optional(),
    cols: Cols.default(80),
    rows: Rows.default(24),
    agent_id: z
      .string({ error: "agent_id is required for API calls" })
      .trim()
      .min(1, "agent_id is required for API calls"),
    /** ours: false = pipes (stdout as binary frames, stderr as `stderr` messages, stdin via binary + `eof`). */
    pty: z.boolean().default(true),
    /** ours: keep running when the socket drops; re-attach with `attach` (Daytona-style). */
    detachable: z.boolean().default(false),
    budget: Budget.optional(),
    profile: z.string().optional(),
    world: WorldSpecInput.optional(),
    /** ours (issue 17): run in a fresh overlay world like an isolated execute; `exit` carries the fs diff. */
    isolated: z.boolean().default(false),
    /** ours (issue 14.2): leave what the command started in the background running when it ends (default: killed). */
    keep_background: z.boolean().default(false),
    /** ours (issue 17): the host's span of this command, written by the agent (HostSpan above) */
    host_span: HostSpan.optional(),
  })
  .refine((r) => (r.cmd === undefined) !== (r.argv === undefined), {
    message: "exactly one of cmd or argv is required",
    path: ["cmd"],
  });
export type StreamStart = z.infer<typeof StreamStart>;
export type StreamStartInput = z.input<typeof StreamStart>;

export const StreamAttach = z.strictObject({
  type: z.literal("attach"),
  session_id: StreamSessionId,
  agent_id: z.string().trim().min(1, "agent_id is required for API calls"),
});
export const StreamResize = z.strictObject({ type: z.literal("resize"), cols: Cols, rows: Rows });
export const StreamSignal = z.strictObject({ type: z.literal("signal"), signal: StreamSignalName });
/** ours: end of stdin (pty: false closes the pipe; pty: true sends ^D). */
export const StreamEof = z.strictObject({ type: z.literal("eof") });
/** ours: leave a detachable session running and close this socket. */
export const StreamDetach = z.strictObject({ type: z.literal("detach") });

/** Control messages after `start`/`attach`. (`start` has a refine, so it is parsed on its own.) */
export const StreamControl = z.discriminatedUnion("type", [StreamResize, StreamSignal, StreamEof, StreamDetach]);
export type StreamControl = z.infer<typeof StreamControl>;

export const StreamStarted = z.strictObject({
  type: z.literal("started"),
  session_id: StreamSessionId,
  span_id: SpanId,
  world_id: WorldId,
  pid: z.number().int(),
  pty: z.boolean(),
  detachable: z.boolean(),
});
export const StreamAttached = z.strictObject({
  type: z.literal("attached"),
  session_id: StreamSessionId,
  span_id: SpanId,
  /** bytes of recent output replayed (as binary frames) right after this message */
  replayed_bytes: z.number().int().nonnegative(),
  /** true when the ring buffer overflowed: the replay starts mid-stream */
  truncated: z.boolean(),
});
export const StreamStderr = z.strictObject({ type: z.literal("stderr"), data_b64: z.string() });
export const StreamExit = z.strictObject({
  type: z.literal("exit"),
  code: z.number().int(),
  signal: z.string().nullable(),
  /** the runtime budget killed the command */
  timed_out: z.boolean().optional(),
  /** ours (issue 17): an isolated session's diff (GET /v1/fs_diff/:span_id has it too) */
  fs_diff: FsDiff.optional(),
  /** ours (issue 15): the command's egress through the world's gateway (the CLI prints what was blocked) */
  egress: EgressSummary.optional(),
});
export const StreamError = z.strictObject({
  type: z.literal("error"),
  code: ErrorCode,
  message: z.string().min(1),
  hint: z.string().optional(),
});
export const StreamServerMessage = z.discriminatedUnion("type", [StreamStarted, StreamAttached, StreamStderr, StreamExit, StreamError]);
export type StreamServerMessage = z.infer<typeof StreamServerMessage>;

// ---------------------------------------------------------------------------------------------
// Scopes (spec: `POST /v1/request_scopes`; tokens reach the command through a sealed memfd)

/** `fs.read:/path`, `fs.write:/path`, `net:host[:port]`, `exec:name` (ours). */
export const Scope = z
  .string()
  .max(512)
  .regex(/^(fs\.read|fs\.write|net|exec):[^\s\0]+$/, "expected KIND:TARGET with KIND one of fs.read, fs.write, net, exec");
export type Scope = z.infer<typeof Scope>;

export const RequestScopesRequest = z.strictObject({
  agent_id: z
    .string({ error: "agent_id is required for API calls" })
    .trim()
    .min(1, "agent_id is required for API calls"),
  scopes: z.array(Scope).min(1, "scopes must list at least one scope").max(64),
  reason: z.string().max(1000).optional(),
});
export type RequestScopesRequest = z.infer<typeof RequestScopesRequest>;

/** 200: everything asked for is granted (already, or by an answered approval). */
export const RequestScopesResponse = z.strictObject({
  agent_id: z.string(),
  granted: z.array(Scope),
  /** all scopes the agent holds now; each execute's token carries these */
  scopes: z.array(Scope),
  /** ours: the answer approved a policy-gated command (host proxy), not scopes; retry it */
  approved_command: z.string().optional(),
});
export type RequestScopesResponse = z.infer<typeof RequestScopesResponse>;

/** What the command reads from `SUBSTRATE_SCOPE_FD` (one JSON line, sealed memfd). */
export const ScopeToken = z.strictObject({
  token: z.string().regex(/^sct_[0-9a-f-]{36}$/),
  agent_id: z.string(),
  span_id: SpanId,
  world_id: WorldId,
  scopes: z.array(Scope),
  issued_at: z.iso.datetime({ offset: true }),
});
export type ScopeToken = z.infer<typeof ScopeToken>;

// ---------------------------------------------------------------------------------------------
// Budgets (ours: `GET /v1/budgets/:agent_id`)

export const BudgetStatus = z.strictObject({
  agent_id: z.string(),
  budget: Budget,
  used: z.strictObject({
    execs: z.number().int().nonnegative(),
    runtime_ms: z.number().int().nonnegative(),
    egress_bytes: z.number().int().nonnegative(),
  }),
  /** per limit: what is left (absent when the limit is not set) */
  remaining: Budget,
  exhausted: z.array(z.enum(["max_execs", "max_runtime_ms", "max_egress_bytes"])),
});
export type BudgetStatus = z.infer<typeof BudgetStatus>;

// ---------------------------------------------------------------------------------------------
// Host proxy audit log (ours): one JSON line per request in ~/.substrate/audit.jsonl

export const AuditLine = z.strictObject({
  ts: z.iso.datetime({ offset: true }),
  method: z.string(),
  path: z.string(),
  status: z.number().int(),
  duration_ms: z.number().nonnegative(),
  agent_id: z.string().nullable(),
  /** how the caller was authenticated */
  auth: z.enum(["peercred", "token", "denied"]),
  peer: z
    .strictObject({ pid: z.number().int(), uid: z.number().int(), gid: z.number().int() })
    .nullable(),
  traceparent: z.string().nullable(),
  /** error code of a non-2xx answer */
  error: z.string().nullable(),
});
export type AuditLine = z.infer<typeof AuditLine>;
