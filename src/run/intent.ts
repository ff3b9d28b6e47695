/**
 * What an entry point asks for: one command, how it does its I/O, who answers an approval.
 * Pure types (no imports at runtime): every entry point (`-c`, `--pty -c`, the shell, shims,
 * replay, `world verify`, the proxy, the bash entry, the MCP server) builds one of these and
 * hands it to `runIntent()` (src/run/index.ts). Nothing else decides policy, world, span or
 * fallback for it.
 */
import type { SpanComponent } from "../contract/span.ts";
import type { WorldSpecInput } from "../contract/world.ts";

/**
 * - `pipes`: this process's stdin/stdout/stderr (or the streams given) are the command's,
 *   streamed as they come (redirected stdin is forwarded as it arrives, never read whole first);
 * - `pty`: the command gets a PTY in the world; our terminal goes raw (resize, ^C, ^Z travel);
 * - `buffered`: output is captured and returned in the outcome (and passed to `onOutput` as
 *   it arrives); stdin is `intent.stdin` bytes or nothing.
 */
export type IoMode = "pipes" | "pty" | "buffered";

/**
 * Who answers an approval the policy asks for:
 * - `tty`: the terminal prompt (with a diff preview from a dry run in an isolated world);
 *   without a terminal it is a deny with a hint;
 * - `api`: no prompt; the outcome is `approval_required` with a pending request that the
 *   caller answers (`answerApproval`, the proxy's POST /v1/request_scopes/approve) and retries;
 * - `deny-list`: shims: the deny list only (no allowlist, isolation or approvals).
 */
export type AskerKind = "tty" | "api" | "deny-list";

export type What = { cmd: string } | { argv: string[] };

export interface RunIntent {
  what: What;
  /** absolute; default process.cwd() */
  cwd?: string;
  /** the caller's environment (the world gets it minus host-only names); default process.env */
  env?: Record<string, string | undefined>;
  io: IoMode;
  /** `--isolated`: a fresh overlay world; the changes wait for `substrate apply`. */
  isolated?: boolean;
  /** `--require-approval`: every command needs an approval (unless auto-approved). */
  requireApproval?: boolean;
  /** span component: "shell" (CLI, shell, replay), "shim", "api" (proxy, MCP) */
  component: SpanComponent;
  asker: AskerKind;
  /** `--world` (true: never fall back to the host) / `--no-world` (false) / neither. */
  worldFlag?: boolean;
  /** agent_id on spans and requests; default $SUBSTRATE_AGENT_ID or "human" */
  agentId?: string;
  /**
   * Per-call changes on top of the world the policy gives (srt's customConfig): merged in
   * plan() only. E.g. replay/verify: `{ reuse_session: false }`; the approval preview:
   * `{ isolate_network: true, allowed_domains: [] }`.
   */
  worldOverride?: Partial<WorldSpecInput>;
  /** buffered io (or pipes without a redirected stdin): bytes for the command's stdin */
  stdin?: Uint8Array;
  /** buffered io: called with each chunk as it arrives */
  onOutput?: (stream: "stdout" | "stderr", chunk: Uint8Array) => void;
  /** pipes/pty io: streams to use instead of this process's own */
  stdio?: { stdin?: NodeJS.ReadStream; stdout?: NodeJS.WriteStream; stderr?: NodeJS.WriteStream };
  /** pty io: output passes through this first (the shell strips its OSC markers here) */
  ptyFilter?: (chunk: Buffer) => Buffer;
  /** abort: the command is killed (world: the stream is closed; host: SIGKILL) */
  signal?: AbortSignal;
  /**
   * (AGENTS, issue 16) pipes io: these signals, when this process receives them, go to the
   * command's process group in the world instead of ending this process (the bash entry:
   * TERM, INT, HUP, so a command's own trap runs); uses the /v1/stream wire.
   */
  forwardSignals?: NodeJS.Signals[];
  /** the policy to use instead of loading it for cwd (the proxy's hot-reloading broker) */
  loadedPolicy?: import("../broker/load.ts").LoadedPolicy;
  /** api asker: the pending-approval holder to use (the proxy's); default one per process */
  approvals?: import("../broker/api.ts").ApiApprovals;
  /** write `substrate: …` notes here (default process.stderr) */
  say?: (line: string) => void;
}

/** What happened. `exit` follows docs/EXIT_CODE_TAXONOMY.md (126 denied, 3 unavailable, …). */
export interface RunOutcome {
  exit: number;
  /** where it ran ("denied": nothing ran; "approval_required": api asker, see `approval`) */
  ran: "world" | "host" | "denied" | "approval_required";
  /** the host command span (children and the agent's span link to it) */
  span_id?: string;
  session_id: string;
  world_id?: string;
  /** scopes the command used (from the agent's result) */
  scopes_used?: string[];
  /** the agent's span of this command (linked to span_id by parent_span) */
  agent_span_id?: string;
  /** buffered io: captured output */
  stdout?: Uint8Array;
  stderr?: Uint8Array;
  /** isolated: what the command changed (kept for `substrate apply`) */
  fs_diff?: import("../contract/world.ts").FsDiff;
  /** the policy decision (before fallback) */
  decision: "run" | "run_isolated" | "deny" | "approval_required";
  policy_id: string;
  /** ran: "denied" / "approval_required": the message (and the api asker's pending request) */
  message?: string;
  hint?: string;
  approval?: import("../contract/policy.ts").ApprovalRequest;
}

const SHELL = /(^|\/)(bash|sh|zsh|dash|ksh)$/;
/** options of bash/sh/zsh that take the next word as their value */
const WITH_VALUE = new Set(["-o", "+o", "-O", "+O", "--rcfile", "--init-file"]);

/** The script of a shell argv's `-c` form (`bash -lc CMD a0…`, `sh -e -c CMD`), else null. */
export function shellScript(argv: readonly string[]): string | null {
  if (!SHELL.test(argv[0] ?? "")) return null;
  let c = false;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--" || a === "-") return c ? (argv[i + 1] ?? null) : null;
    if (WITH_VALUE.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith("--")) continue;
    if (/^[-+][A-Za-z]+$/.test(a)) {
      if (a.startsWith("-") && a.includes("c")) c = true;
      continue;
    }
    // bash: with -c, commands are read from the first non-option argument
    return c ? a : null;
  }
  return null;
}

/**
 * The command line of an intent, as the policy and the trace see it: the string of `-c`, the
 * script of a shell's `-c` form (the bash entry passes `["bash", …the caller's own args]`: the
 * policy decides on the script, not on the wrapper), else the argv quoted like a shell would.
 */
export function commandLine(what: What): string {
  if ("cmd" in what) return what.cmd;
  const script = shellScript(what.argv);
  if (script !== null) return script;
  return what.argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`)).join(" ");
}
