/** The world agent's implementation of the API: executes land in real worlds. */
import type { EgressSummary } from "../src/contract/net.ts";
import { existsSync, statSync } from "node:fs";
import { arch } from "node:os";
import { isAbsolute, relative } from "node:path";
import {
  newSpanId,
  type FsDiff,
  WorldSpec,
  type BudgetStatus,
  type Capabilities,
  type ExecuteRequest,
  type RequestScopesRequest,
  type RequestScopesResponse,
  type Span,
  type ExecuteResponse,
  type WorldDoctorReportV1,
} from "../src/contract/index.ts";
import { ApiError, type AgentService, type OutputSink, type RequestContext, type WorldInfo } from "../src/api/service.ts";
import type { Caller } from "../src/contract/world.ts";
import type { HostSpan } from "../src/contract/stream.ts";
import { assertProjectWritable, resolveCaller, selfCaller } from "./caller.ts";
import { phases, type Phases } from "./timing.ts";
import type { ExecIO, World, WorldProcess } from "./world/session.ts";
import type { CtlExit } from "./world/ctl.ts";

/** What `start()` needs: the request's fields (execute or stream), its transport context, a PTY. */
export interface StartInput {
  req: Pick<ExecuteRequest, "cmd" | "argv" | "cwd" | "env" | "agent_id" | "budget" | "profile" | "isolated" | "world" | "keep_background"> & { host_span?: HostSpan };
  ctx?: RequestContext;
  /** Already resolved (stream: once per connection); else from `ctx`. */
  caller?: Caller;
  pty?: { cols: number; rows: number };
}
/**
 * Issue 17: the agent-side policy gate — "the policy applies however a command arrives",
 * including a client on the agent's own socket (docs/ARCHITECTURE.md "Where the policy decision
 * runs"). Called by `start()` for every execute and stream before anything runs. Throw an
 * ApiError to refuse (`denied` 403, `approval_required` 409); return `isolated: true` to force
 * an isolated run, `world` to shape the world (merged over the request's own `world`).
 * Install with `svc.gate = …` (agent/main.ts).
 */
export type AgentGate = (i: {
  caller: Caller;
  agentId: string;
  cmd: string;
  argv?: string[];
  cwd: string;
  projectDir: string;
  isolated: boolean;
  world?: ExecuteRequest["world"];
  /** issue 17 (the CLI's fast path): the host's span, which the gate's side writes as the caller */
  host?: HostSpan;
}) => Promise<{ isolated?: boolean; world?: ExecuteRequest["world"]; host?: HostSpanWriter } | void>;

/** What the host span of a fast-path command gets at its end (src/trace/command-span.ts CommandResult). */
export type HostSpanResult = { exit: number; world_id: string; scopes_used: string[] };
/** The fast path's host span (StreamStart.host_span), written on the gate's side (agent/policyd.ts). */
export interface HostSpanWriter {
  /** the command started: the policy events and command_start */
  start(): void;
  /** command_complete; resolves once it is written (before the client hears `exit`) */
  complete(r: HostSpanResult): Promise<void>;
  /** nothing ran: forget it */
  drop(): void;
}

export interface FinishedCommand {
  exit: CtlExit;
  fs_diff?: FsDiff;
  egress_bytes?: number;
  /** Issue 15 (EGRESS): the command's own egress through the world's gateway (bytes, what was blocked). */
  egress?: EgressSummary;
  scopes_used: string[];
}
export interface StartedCommand {
  world: World;
  spanId: string;
  cwd: string;
  cmd: string;
  caller: Caller;
  proc: WorldProcess;
  /** Resolves once the command ended and its span is written (isolated: with the diff); rejects with an ApiError. */
  done: Promise<FinishedCommand>;
}
import { versionInfo } from "../src/version.ts";
import { detectFeatures, kernelRelease } from "./features.ts";
import { collectWorldDoctorReport } from "./doctor.ts";
import type { WorldManager } from "./world/manager.ts";
import { WorldLostError, WorldStartError } from "./world/session.ts";
import { IsolatedResults } from "./world/isolated_results.ts";
import { OVERLAY_BASE, OverlayError, type OverlayDirs } from "./world/overlay.ts";
import { discardOverlay } from "./world/apply.ts";
import type { FsApplyResponse, FsDiscardResponse } from "../src/contract/fsdiff.ts";
import { AgentBudgets } from "./budget.ts";
import { ScopeRegistry } from "./scopes.ts";
import { findSpan } from "../src/trace/reader.ts";
import { recordExecuteSpan } from "../src/trace/command-span.ts";
import { worldImageVersion } from "../src/trace/context.ts";

/** Output kept per stream for the buffered (non-stream) response. */
export const MAX_CAPTURE_BYTES = 32 * 1024 * 1024;
const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const inside = (dir: string, p: string): boolean => {
  const r = relative(dir, p);
  return r === "" || (!r.startsWith("..") && !isAbsolute(r));
};

/** Paths a command can see besides the project (rootfs.ts). */
const VISIBLE = ["/tmp", "/root", "/var/tmp", "/usr", "/etc", "/opt"];

class Capture {
  private chunks: Uint8Array[] = [];
  private size = 0;
  truncated = false;
  push(b: Uint8Array) {
    if (this.size + b.length > MAX_CAPTURE_BYTES) {
      this.truncated = true;
      b = b.subarray(0, Math.max(0, MAX_CAPTURE_BYTES - this.size));
    }
    this.size += b.length;
    if (b.length) this.chunks.push(b);
  }
  b64(): string {
    return Buffer.concat(this.chunks).toString("base64");
  }
}

export class WorldAgentService implements AgentService {
  private readonly started = Date.now();
  private features = detectFeatures();
  /** Issue 6: per-agent budgets (429 + rate_limit span) and scope grants (sealed-fd tokens). */
  readonly budgets = new AgentBudgets((m) => process.stderr.write(`substrate-world-agent: ${m}\n`));
  readonly scopes = new ScopeRegistry();

  private readonly isolated: IsolatedResults;
  /** Issue 17: the agent-side policy gate (see AgentGate); none = no agent-side policy. */
  gate?: AgentGate;

  constructor(
    private readonly worlds: WorldManager,
    /** Where isolated worlds keep upper/work (on disk, never tmpfs; spec). */
    private readonly overlayBase: string = process.env.SUBSTRATE_OVERLAY_DIR ?? OVERLAY_BASE,
  ) {
    this.isolated = new IsolatedResults(this.overlayBase);
  }

  async capabilities(): Promise<Capabilities> {
    return {
      api_version: "v1",
      agent: versionInfo(),
      kernel: kernelRelease(),
      arch: arch(),
      backend: "linux-local",
      features: this.features,
      worlds: this.worlds.worldStats(),
      uptime_ms: Date.now() - this.started,
      // issue 6: the memfd seal path needs memfd_create (Linux >= 3.17; always here)
      api: { stream: true, stream_detach: true, budgets: true, scope_fd: true, request_scopes: true, trace: true },
    };
  }

  /**
   * Issue 13: the caller of a request — the socket's peer (SO_PEERCRED) when there is one,
   * else the agent's own identity (in-process callers). Never anything the body says.
   */
  callerOf(ctx?: RequestContext): Caller {
    return ctx?.peer ? resolveCaller(ctx.peer.uid, ctx.peer.gid) : selfCaller();
  }

  /** May this caller see / control this world? Its owner, and root. */
  private owns(caller: Caller, w: World): boolean {
    return caller.uid === 0 || (w.owner?.caller.uid ?? process.getuid?.() ?? 0) === caller.uid;
  }

  /** Resolve and check the world spec and cwd of a request; throws 400s a caller can fix. */
  resolve(req: Pick<ExecuteRequest, "cwd" | "world">, caller?: Caller): { spec: WorldSpec; cwd: string } {
    const projectDir = req.world?.project_dir ?? req.cwd;
    if (!projectDir)
      throw new ApiError("bad_request", "cwd or world.project_dir is required", "send the absolute project directory as cwd");
    if (!existsSync(projectDir) || !statSync(projectDir).isDirectory())
      throw new ApiError("bad_request", `project directory ${projectDir} does not exist or is not a directory`);
    const parsed = WorldSpec.safeParse({ ...req.world, project_dir: projectDir });
    if (!parsed.success) throw new ApiError("bad_request", `world: ${parsed.error.issues.map((i) => i.message).join("; ")}`);
    const cwd = req.cwd ?? projectDir;
    if (!inside(projectDir, cwd) && !VISIBLE.some((v) => inside(v, cwd)))
      throw new ApiError(
        "bad_request",
        `cwd ${cwd} is not visible in the world of project ${projectDir}`,
        "use a cwd inside the project directory",
      );
    // Issue 13: the project is mounted writable for the caller: the caller must be able to
    // write it on the host (checked as the caller, not as root) — else nothing runs.
    if (caller) assertProjectWritable(caller, projectDir);
    return { spec: parsed.data, cwd };
  }

  /** Public for agent/stream.ts (issue 6). */
  env(req: Pick<ExecuteRequest, "env" | "agent_id">, spec: WorldSpec, worldId: string, caller?: Caller): Record<string, string> {
    // Issue 13: the caller's identity, not the request's: HOME is the caller's real home (the
    // world shows it, shaped by the policy's fs view), USER/LOGNAME/SHELL its passwd entry.
    const who = caller ?? selfCaller();
    // SHLVL (FSVIEW): bash sources ~/.bashrc for `bash -c` when stdin is a socket (Bun's pipes)
    // and SHLVL < 2 ("run by rshd"); with the caller's real home that would run the user's rc.
    const env: Record<string, string> = { PATH: DEFAULT_PATH, LANG: "C.UTF-8", TERM: "xterm-256color", SHLVL: "1", ...req.env };
    env.HOME = who.home;
    env.USER = who.name;
    env.LOGNAME = who.name;
    env.SHELL ??= who.shell;
    void spec;
    env.SUBSTRATE_WORLD = "enabled";
    env.SUBSTRATE_WORLD_ID = worldId;
    env.SUBSTRATE_AGENT_ID = req.agent_id;
    return env;
  }

  /**
   * Issue 17: THE agent-side way a command starts in a world — `POST /v1/execute` and
   * `/v1/stream` both come here, so they share the caller check, the budget, session or
   * isolated world, the scope token, the span (parent, replay context, egress bytes, fs diff)
   * and the lost-world handling. The caller keeps only its I/O protocol.
   */
  async start(input: StartInput, io: ExecIO): Promise<StartedCommand> {
    const { ctx } = input;
    let req = input.req;
    const caller = input.caller ?? this.callerOf(ctx);
    const tm = phases("substrate-agent-timing"); // bench/hotpath.ts (SUBSTRATE_TIMING=1)
    let host: HostSpanWriter | undefined;
    // Issue 17: a host span only the gate's side can write (agent/policyd.ts): no gate, no fast path.
    if (req.host_span && !this.gate) throw new ApiError("unsupported", "this agent has no policy gate to write the host span with", "run it without host_span");
    if (this.gate) {
      // A request that cannot run at all is a 400 whatever the policy says (and no policy load).
      this.resolve(req);
      // Issue 17: the policy decides before anything starts, however the command arrived.
      const projectDir = req.world?.project_dir ?? req.cwd ?? "/";
      const g = await this.gate({
        caller,
        agentId: req.agent_id,
        cmd: req.cmd ?? req.argv!.join(" "),
        ...(req.argv ? { argv: req.argv } : {}),
        cwd: req.cwd ?? projectDir,
        projectDir,
        isolated: req.isolated ?? false,
        ...(req.world ? { world: req.world } : {}),
        ...(req.host_span ? { host: req.host_span } : {}),
      });
      if (g) req = { ...req, ...(g.isolated ? { isolated: true } : {}), ...(g.world ? { world: { ...req.world, ...g.world } } : {}) };
      host = g ? g.host : undefined;
      if (req.host_span && !host) throw new ApiError("unsupported", "the policy gate did not take the host span", "run it without host_span");
    }
    tm.mark("gate");
    try {
      return await this.startGated(req, caller, input, io, host, tm);
    } catch (e) {
      host?.drop(); // nothing ran
      throw e;
    }
  }

  /** start(), after the gate: the world, the spawn, and the command's end (span, diff, budget). */
  private async startGated(req: StartInput["req"], caller: Caller, input: StartInput, io: ExecIO, host: HostSpanWriter | undefined, tm: Phases): Promise<StartedCommand> {
    const { spec, cwd } = this.resolve(req, caller);
    tm.mark("resolve");
    const owner = { caller, agentId: req.agent_id };
    const cmd = req.cmd ?? req.argv!.join(" ");
    // Issue 6: the budget is checked (and one exec taken) before anything starts.
    // Issue 14.6: budgets are keyed by (caller uid, agent_id): another user's agent of the same name never shares or resets it.
    const lease = this.budgets.acquire({ agent_id: req.agent_id, budget: req.budget, cmd, cwd, uid: caller.uid });
    // Isolated (issue 3): a fresh world whose project is an overlay with upper/work on disk;
    // the host project is untouched, the upper dir becomes the span's fs_diff, kept until
    // applied or discarded (/v1/fs_diff/:span_id).
    let overlay: OverlayDirs | undefined;
    let world: World;
    try {
      if (req.isolated) {
        // Issue 3 (pool, agent/world/spares.ts): a pre-warmed world with its own fresh overlay
        // dirs when one is ready, else built now; on failure its overlay dirs are already gone.
        ({ world, overlay } = await this.worlds.isolated({ ...spec, reuse_session: false }, this.overlayBase, owner));
      } else world = await this.worlds.session(spec, owner);
    } catch (e) {
      lease.settle(0);
      if (overlay) await discardOverlay(overlay.dir, this.overlayBase).catch(() => {});
      if (e instanceof OverlayError) throw new ApiError("unavailable", e.message, e.hint);
      if (e instanceof WorldStartError) throw new ApiError("unavailable", e.message, "run `substrate world doctor` to see which kernel feature is missing");
      throw e;
    }
    tm.mark("world");
    const spanId = newSpanId();
    const token = this.scopes.tokenFor(req.agent_id, spanId, world.id, caller.uid);
    const env = this.env(req, spec, world.id, caller);
    const t0 = performance.now(); // runtime budget: the command's time, not the world's start
    const startedAt = new Date().toISOString();
    const egressBefore = world.egressBytes();
    const proc = world.spawn(
      {
        argv: req.argv ?? ["/bin/bash", "-c", req.cmd!],
        cwd,
        env,
        timeout_ms: lease.timeoutMs,
        scope_token: `${JSON.stringify(token)}\n`,
        ...(input.pty ? { pty: input.pty } : {}),
        ...(req.keep_background ? { keep_background: true } : {}),
      },
      io,
    );
    // Issue 17 (fast path): the host span starts once the command does; nothing ran → forgotten.
    tm.mark("spawned");
    void proc.started.then(() => tm.mark("started"), () => {});
    const hostStarted = host ? proc.started.then(() => (host.start(), true), () => (host.drop(), false)) : Promise.resolve(false);
    const release = async () => {
      if (!overlay) return;
      await this.worlds.release(world);
    };
    const done = (async (): Promise<FinishedCommand> => {
      try {
        const exit = await proc.exited;
        tm.mark("exited");
        const ms = performance.now() - t0; // the command's time (trace), before the diff is read
        // Egress (span egress_bytes, budget max_egress_bytes): the world's bytes out while the
        // command ran. Concurrent commands in one session world share the counter.
        const egressAfter = world.egressBytes();
        // Issue 15 (EGRESS): the gateway counts this command's connections apart (both directions).
        const egress = await proc.egress;
        const egress_bytes = egress ? egress.bytes_up + egress.bytes_down : egressBefore !== null && egressAfter !== null ? Math.max(0, egressAfter - egressBefore) : undefined;
        if (egress_bytes) this.budgets.recordEgress(req.agent_id, egress_bytes, caller.uid);
        let fs_diff: FsDiff | undefined;
        if (overlay) {
          // The world's processes must be gone (nothing mounted, nothing writing) before the upper
          // dir is read; its network/cgroup teardown finishes in the background (manager.release).
          await release();
          tm.mark("released");
          this.isolated.register(overlay.dir, { span_id: spanId, world_id: world.id, project_dir: spec.project_dir, owner_uid: caller.uid });
          fs_diff = await this.isolated.diff(spanId);
          tm.mark("diff");
        }
        // The fast path's host span, written by the caller's helper while we write ours below;
        // on disk before the client hears `exit` (as the CLI's own would be). (No egress_bytes:
        // the pipeline's host span never had them — the agent's span has.)
        const hostDone = host && (await hostStarted) ? host.complete({ exit: exit.exit, world_id: world.id, scopes_used: token.scopes }) : undefined;
        // Trace (issue 5): one command_complete span per command under the returned span_id
        // (GET /v1/trace/:span_id finds it); the caller's SUBSTRATE_SPAN_ID becomes parent_span.
        recordExecuteSpan({
          span_id: spanId, started_at: startedAt, duration_ms: ms,
          cmd, cwd, env, component: "api",
          agent_id: req.agent_id, exit: exit.exit, world_id: world.id, scopes_used: token.scopes, pty: input.pty !== undefined,
          world_image_version: worldImageVersion(versionInfo()), ...(req.profile ? { policy_id: req.profile } : {}),
          ...(fs_diff ? { fs_diff } : {}),
          ...(egress_bytes !== undefined ? { egress_bytes } : {}),
        });
        tm.mark("span");
        await hostDone;
        tm.mark("host_span");
        tm.dump();
        return { exit, fs_diff, egress_bytes, ...(egress ? { egress } : {}), scopes_used: token.scopes };
      } catch (e) {
        // the stream ends such a command with exit 1: so does its host span
        if (host && (await hostStarted)) await host.complete({ exit: 1, world_id: world.id, scopes_used: token.scopes }).catch(() => {});
        if (overlay) {
          await release();
          await discardOverlay(overlay.dir, this.overlayBase).catch(() => {});
        }
        const code = (e as { code?: string }).code;
        if (code === "not_found") throw new ApiError("bad_request", (e as Error).message, "check the command path");
        if (e instanceof WorldLostError)
          // A command that exhausted the world's memory, or a killed spawner: the next execute
          // gets a fresh world.
          throw new ApiError(
            "unavailable",
            `${e.message}: the world's spawner died (a command may have exhausted the world's pids or memory limit)`,
            "retry: the next execute gets a fresh world; raise world.limits if the command needs more",
          );
        throw e;
      } finally {
        lease.settle(performance.now() - t0);
        // Issue 3 (pool): this isolated execute is done; warm the world for the next one of this
        // spec now (not earlier: building it would compete for the CPU with this one).
        if (overlay) this.worlds.spares.warm(spec, this.overlayBase, owner);
      }
    })();
    done.catch(() => {});
    return { world, spanId, cwd, cmd, proc, done, caller };
  }

  async execute(req: ExecuteRequest, sink?: OutputSink, signal?: AbortSignal, ctx?: RequestContext): Promise<ExecuteResponse> {
    const out = new Capture();
    const err = new Capture();
    const run = await this.start(
      { req, ctx, ...(req.pty ? { pty: { cols: 80, rows: 24 } } : {}) },
      {
        onStdout: (b) => (sink ? sink.stdout(b) : out.push(b)),
        onStderr: (b) => (sink ? sink.stderr(b) : err.push(b)),
      },
    );
    // Issue 18.4 (back-pressure): a streaming sink (the NDJSON response) pauses the command's
    // output while its client lags (the ctl connection stops being read; the spawner stops
    // reading the command's pipe; the command blocks in write(2)).
    sink?.flow?.(run.proc);
    const onAbort = () => run.proc.kill();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      if (req.stdin_b64 !== undefined) run.proc.write(Buffer.from(req.stdin_b64, "base64"));
      run.proc.end();
      const r = await run.done;
      return {
        exit: r.exit.exit,
        span_id: run.spanId,
        stdout_b64: out.b64(),
        stderr_b64: err.b64(),
        scopes_used: r.scopes_used,
        world_id: run.world.id,
        ...(r.fs_diff ? { fs_diff: r.fs_diff } : {}),
        ...(r.egress ? { egress: r.egress } : {}), // issue 15 (EGRESS)
      };
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  // Isolated results (issue 3): GET/POST /v1/fs_diff/:span_id[/apply|/discard] -------------

  fsDiff(spanId: string, ctx?: RequestContext): Promise<FsDiff> {
    return this.isolated.diff(spanId, this.callerOf(ctx).uid);
  }
  async applyFsDiff(spanId: string, paths?: string[], ctx?: RequestContext): Promise<FsApplyResponse> {
    try {
      return await this.isolated.apply(spanId, paths, this.callerOf(ctx).uid);
    } finally {
      // Issue 3 (pool): a project changed under the spares' overlays (their lower dir): drop
      // them all (apply is rare; the next isolated execute warms a new one).
      this.worlds.spares.invalidate();
    }
  }
  discardFsDiff(spanId: string, ctx?: RequestContext): Promise<FsDiscardResponse> {
    return this.isolated.discard(spanId, this.callerOf(ctx).uid);
  }

  // Issue 6 routes -------------------------------------------------------------------------

  async trace(spanId: string): Promise<Span | undefined> {
    return findSpan(spanId);
  }

  async requestScopes(req: RequestScopesRequest, ctx?: RequestContext): Promise<RequestScopesResponse> {
    // Issue 18.5: pending approvals and grants belong to the asking uid; answered only on the
    // approver channel (agent/approver.ts), never here.
    return { agent_id: req.agent_id, ...this.scopes.request(req.agent_id, req.scopes, req.reason, this.callerOf(ctx).uid) };
  }

  async budget(agentId: string, ctx?: RequestContext): Promise<BudgetStatus | undefined> {
    return this.budgets.tracker.status(agentId, this.budgets.principal(this.callerOf(ctx).uid));
  }

  /** GET /v1/doctor/world: Landlock ABI syscall + real overlay enumeration probe (agent/doctor.ts). */
  async worldDoctor(): Promise<WorldDoctorReportV1> {
    return collectWorldDoctorReport();
  }

  async listWorlds(ctx?: RequestContext): Promise<WorldInfo[]> {
    const caller = this.callerOf(ctx);
    return this.worlds.list().filter((w) => this.owns(caller, w)).map((w) => ({
      id: w.id,
      project_dir: w.spec.project_dir,
      isolated: w.isolated,
      isolate_network: w.spec.isolate_network,
      created_at: new Date(w.createdAt).toISOString(),
      age_ms: Date.now() - w.createdAt,
      execs: w.execs,
      limits: w.spec.limits,
      fs_mode: w.spec.fs_mode,
      fs_isolation: w.spec.fs_isolation,
      mounts: w.mounts(),
      warnings: [...w.warnings],
    }));
  }

  async deleteWorld(id: string, ctx?: RequestContext): Promise<boolean> {
    const w = this.worlds.get(id);
    if (w && !this.owns(this.callerOf(ctx), w)) return false; // another uid's world: not found
    return this.worlds.destroy(id);
  }
}
