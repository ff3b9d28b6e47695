/**
 * The two call sites' helpers: a command's `command_start` / `command_complete` pair (host
 * CLI: `substrate -c`, shell, shims) and a single `command_complete` for an API execute
 * (world agent). Best effort by design: a trace that cannot be written prints one warning
 * per process and never changes the command's outcome or exit code.
 */
// specific contract files, not the index: this is on the `substrate -c` hot path
import type { ExecuteResponse } from "../contract/execute.ts";
import type { SpanComponent } from "../contract/span.ts";
import type { WorldBackendName } from "../contract/world.ts";
import type { ReplayContext } from "../contract/span.ts";
import { newSpanId } from "../contract/ids.ts";
import { SpanContext } from "./span.ts";
import { buildReplayContext } from "./context.ts";
import { appendSpanSync, type TraceWriterOptions } from "./writer.ts";

let warned = false;
function safeAppend(span: Parameters<typeof appendSpanSync>[0], opts: TraceWriterOptions): void {
  try {
    appendSpanSync(span, opts);
  } catch (e) {
    if (warned) return;
    warned = true;
    process.stderr.write(
      `substrate: cannot write the trace (${(e as Error).message.split("\n")[0]}); the command is not affected. Set SUBSTRATE_TRACE to a writable file.\n`,
    );
  }
}

type Env = Record<string, string | undefined>;

export interface CommandSpanInput {
  cmd: string;
  cwd: string;
  /** the command's environment: hashed for replay_context, never written */
  env: Env;
  component: SpanComponent;
  agent_id?: string;
  /** the span's id when the pipeline minted it already (src/run/plan.ts) */
  span_id?: string;
  session_id?: string;
  parent_span?: string;
  policy_id?: string;
  policy_commit?: string;
  world_backend?: WorldBackendName;
  world_image_version?: string | null;
  pty?: boolean;
  /** default traceFilePath() */
  tracePath?: string;
  /**
   * The replay context's host parts, computed by the process that ran the command (the CLI's
   * fast path: the agent writes its host span, agent/policyd.ts); default: from `env` and this
   * process's umask.
   */
  replay?: Pick<ReplayContext, "path" | "env_hash" | "umask" | "locale" | "world_image_version">;
}

/** What a finished command reports: an ExecuteResponse, or just an exit code (host execution). */
export type CommandResult = Partial<Pick<ExecuteResponse, "world_id" | "scopes_used" | "fs_diff">> & {
  exit: number;
  egress_bytes?: number;
};

/**
 * `const span = CommandSpan.start({...})` writes command_start; pass `span.env` (adds
 * SUBSTRATE_SPAN_ID) to the command so nested substrate calls become child spans;
 * `span.complete(result)` writes command_complete with exit, duration, diff, replay context.
 */
export class CommandSpan {
  readonly id: string;
  private readonly t0 = performance.now();
  private readonly startedAt = new Date().toISOString();
  private readonly opts: TraceWriterOptions;
  private done = false;

  private constructor(private readonly i: CommandSpanInput) {
    this.opts = i.tracePath ? { path: i.tracePath } : {};
    this.id = i.span_id ?? newSpanId();
  }

  static start(i: CommandSpanInput): CommandSpan {
    const s = new CommandSpan(i);
    safeAppend({ ...s.base(), ts: s.startedAt, event_type: "command_start" }, s.opts);
    return s;
  }

  /** Environment additions for the command: its span id (children link to it) and the session. */
  get env(): Record<string, string> {
    return { SUBSTRATE_SPAN_ID: this.id, SUBSTRATE_SESSION_ID: this.base().session_id };
  }

  private result: CommandResult | undefined;

  /** Hand to a streamed execute: the result frame carries world id, scopes and fs diff. */
  readonly onResult = (r: ExecuteResponse): void => {
    this.result = r;
  };

  /** Await the exit code, write command_complete (with the captured result), pass the code on. */
  async finish(exit: number | Promise<number>): Promise<number> {
    const code = await exit;
    this.complete({ ...this.result, exit: code });
    return code;
  }

  /** The command failed to run (agent gone, bad request): complete with the error's exit code, rethrow it. */
  fail<E>(err: E): E {
    const code = (err as { exitCode?: unknown }).exitCode;
    this.complete({ ...this.result, exit: typeof code === "number" ? code : 1 });
    return err;
  }

  complete(r: CommandResult): void {
    if (this.done) return;
    this.done = true;
    const i = this.i;
    safeAppend(
      {
        ...this.base(),
        ts: new Date().toISOString(),
        event_type: "command_complete",
        ...(r.world_id ? { world_id: r.world_id } : {}),
        exit: r.exit,
        // (r may be a whole ExecuteResponse: only the span's fields are picked)
        ...(r.scopes_used ? { scopes_used: r.scopes_used } : {}),
        ...(r.fs_diff ? { fs_diff: r.fs_diff } : {}),
        ...(r.egress_bytes !== undefined ? { egress_bytes: r.egress_bytes } : {}),
        duration_ms: Math.round((performance.now() - this.t0) * 1000) / 1000,
        replay_context: replayContextOf(i),
      },
      this.opts,
    );
  }

  private base() {
    const i = this.i;
    // a nested command (run by another traced command) names the outer span in its env
    const ctx = SpanContext.fromEnv(i.env);
    const parent = i.parent_span ?? ctx.parent_span;
    return {
      session_id: i.session_id ?? ctx.session_id,
      span_id: this.id,
      ...(parent ? { parent_span: parent } : {}),
      component: i.component,
      ...(i.world_backend ? { world_backend: i.world_backend } : {}),
      ...(i.policy_id ? { policy_id: i.policy_id } : {}),
      ...(i.policy_commit ? { policy_commit: i.policy_commit } : {}),
      agent_id: i.agent_id ?? i.env.SUBSTRATE_AGENT_ID ?? "human",
      cwd: i.cwd,
      cmd: i.cmd,
      ...(i.pty !== undefined ? { pty: i.pty } : {}),
    };
  }
}

/**
 * World agent: one `command_complete` line for an API execute, under the span id the API
 * returns (so `GET /v1/trace/:span_id` finds it). `parent_span` comes from the caller's
 * SUBSTRATE_SPAN_ID (the host's shell span), linking the two sides of one command.
 */
export function recordExecuteSpan(
  i: Omit<CommandSpanInput, "parent_span"> & { span_id: string; started_at: string; duration_ms: number } & CommandResult,
): void {
  const ctx = SpanContext.fromEnv(i.env);
  safeAppend(
    {
      ts: i.started_at,
      event_type: "command_complete",
      session_id: i.session_id ?? ctx.session_id,
      span_id: i.span_id,
      ...(ctx.parent_span ? { parent_span: ctx.parent_span } : {}),
      component: i.component,
      ...(i.world_id ? { world_id: i.world_id } : {}),
      ...(i.world_backend ? { world_backend: i.world_backend } : {}),
      ...(i.policy_id ? { policy_id: i.policy_id } : {}),
      ...(i.policy_commit ? { policy_commit: i.policy_commit } : {}),
      agent_id: i.agent_id ?? "human",
      cwd: i.cwd,
      cmd: i.cmd,
      exit: i.exit,
      ...(i.pty !== undefined ? { pty: i.pty } : {}),
      ...(i.scopes_used ? { scopes_used: i.scopes_used } : {}),
      ...(i.fs_diff ? { fs_diff: i.fs_diff } : {}),
      ...(i.egress_bytes !== undefined ? { egress_bytes: i.egress_bytes } : {}),
      duration_ms: Math.round(i.duration_ms * 1000) / 1000,
      replay_context: replayContextOf(i),
    },
    i.tracePath ? { path: i.tracePath } : {},
  );
}

/** A command span's replay context, from what the span was started with. */
function replayContextOf(i: Pick<CommandSpanInput, "cwd" | "env" | "policy_id" | "policy_commit" | "world_image_version" | "replay">): ReplayContext {
  if (i.replay) return { ...i.replay, cwd: i.cwd, policy_id: i.policy_id ?? null, policy_commit: i.policy_commit ?? null };
  return buildReplayContext({
    cwd: i.cwd,
    env: i.env,
    policyId: i.policy_id ?? null,
    policyCommit: i.policy_commit ?? null,
    worldImageVersion: i.world_image_version ?? null,
  });
}
