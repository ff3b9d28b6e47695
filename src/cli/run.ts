/**
 * `substrate -c 'cmd'`: resolve config, make sure a world is ready, run the command in it
 * with output streamed to this terminal, exit with its exit code. World disabled → host.
 * World enabled but unavailable → one warning line and the host, unless required (exit 3).
 */
import { fstatSync } from "node:fs";
import type { EffectiveConfig, ExecuteRequestInput, ExecuteResponse, FsDiff } from "../contract/index.ts";
import { AgentApiError, AgentUnreachable, type AgentClient } from "../api/client.ts";
import { effectiveConfig } from "../config.ts";
import { WorldUnavailable, type ReadyWorld, type WorldBackend } from "../world/backend.ts";
import { selectBackend } from "./_backend.ts";
import { CliError, ExitCode, signalExit } from "./_errors.ts";
import { projectDirFor } from "./_project.ts";
import { versionInfo } from "../version.ts";

export interface RunOptions {
  cmd: string;
  /** `--require-approval`: every command needs an approval (unless auto-approved). */
  requireApproval?: boolean;
  worldFlag?: boolean;
  /** `--isolated`: a fresh overlay world; the changes wait for `substrate apply`. */
  isolated?: boolean;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

const say = (line: string) => process.stderr.write(`substrate: ${line}\n`);

/** Env passed into the world: the caller's, minus what only makes sense on the host. */
export function worldEnv(env: NodeJS.ProcessEnv, cwd: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) continue;
    if (k.startsWith("LISTEN_") || k === "SUBSTRATE_WORLD_SOCKET" || k === "OLDPWD") continue;
    out[k] = v;
  }
  out.PWD = cwd;
  return out;
}

/** Is stdin a pipe, file or socket (forwarded to the command), not a terminal or /dev/null? */
function stdinRedirected(): boolean {
  try {
    const st = fstatSync(0);
    return st.isFIFO() || st.isFile() || st.isSocket();
  } catch {
    return false;
  }
}

/** Read all of stdin (only for isolated executes, which have no streaming path yet). */
async function readStdinIfRedirected(): Promise<Uint8Array | undefined> {
  return stdinRedirected() ? new Uint8Array(await Bun.stdin.arrayBuffer()) : undefined;
}

export async function runOnHost(cmd: string, cwd: string, env: NodeJS.ProcessEnv, stdin?: Uint8Array): Promise<number> {
  // stdin already consumed (read for the world) is handed over; otherwise inherited.
  const proc = Bun.spawn(["/bin/bash", "-c", cmd], {
    cwd,
    env: { ...env, SUBSTRATE_WORLD: "disabled" },
    stdio: [stdin ? "pipe" : "inherit", "inherit", "inherit"],
  });
  if (stdin) {
    const sink = proc.stdin as import("bun").FileSink;
    sink.write(stdin);
    void sink.end();
  }
  const code = await proc.exited;
  return signalExit((proc.signalCode as string | null) ?? null, code);
}

/** Ready world, or null = run on the host (after one warning line). */
export async function readyOrFallback(cfg: EffectiveConfig, env: NodeJS.ProcessEnv, backend: WorldBackend = selectBackend(cfg, env)): Promise<ReadyWorld | null> {
  try {
    const ready = await backend.ensureReady({ start: true });
    if (ready.note) say(ready.note);
    return ready;
  } catch (e) {
    if (!(e instanceof WorldUnavailable)) throw e;
    if (cfg.world_fs_require_world) throw new CliError(ExitCode.UNAVAILABLE, `world required but unavailable: ${e.message}`, e.hint);
    say(`world unavailable (${e.message}); running on the host — ${e.hint}`);
    return null;
  }
}

export async function runCommandLine(o: RunOptions): Promise<number> {
  const env = o.env ?? process.env;
  const cwd = o.cwd ?? process.cwd();
  const cfg = effectiveConfig({ env, worldFlag: o.worldFlag });

  // Policy broker (src/broker, issue 4): every command is decided before it runs anywhere.
  // deny → 126 (message already printed); run_isolated → `isolated: true` on the execute
  // request; approvals are prompted on a TTY. Policy events go to the trace.
  const { decideForCli, isolationUnavailable, recordPolicyEvents, worldSpecFromPolicy } = await import("../broker/index.ts");
  const gate = await decideForCli({
    cmd: o.cmd,
    cwd,
    isTTY: Boolean(process.stdin.isTTY),
    stdin: process.stdin,
    stderr: process.stderr,
    requireApproval: o.requireApproval === true,
    ...(cfg.world_enabled ? { dryRun: (c: string) => dryRunDiff(c, cwd, cfg, env) } : {}),
  });
  await recordPolicyEvents(gate.events);
  if (gate.action === "deny") return gate.exitCode ?? ExitCode.DENIED;
  const hostGate = (why?: string): number | null => isolationUnavailable(gate, process.stderr, why); // isolation needs a world

  // Trace (issue 5): command_start now; command_complete (exit, world, fs diff, replay context)
  // through span.finish/span.fail on every exit path below. span.env (SUBSTRATE_SPAN_ID,
  // SUBSTRATE_SESSION_ID) goes to the command so nested calls become child spans.
  const { CommandSpan, worldImageVersion } = await import("../trace/index.ts");
  const span = CommandSpan.start({
    cmd: o.cmd, cwd, env, component: "shell", policy_id: gate.policy_id,
    ...(gate.policy_commit ? { policy_commit: gate.policy_commit } : {}),
    world_image_version: worldImageVersion(versionInfo()), // the embedded agent = the one we run
  });

  if (!cfg.world_enabled) return span.finish(hostGate() ?? runOnHost(o.cmd, cwd, { ...env, ...span.env }));

  const backend = selectBackend(cfg, env);
  // Issue 6: redirected stdin is STREAMED over /v1/stream (pty: false) as it arrives, never
  // read to the end first: a harness that leaves stdin open but silent must not hang
  // `substrate -c true`. Only isolated executes (no stream path) still read it whole.
  const isolated = o.isolated === true || gate.action === "run_isolated";
  const streamStdin = stdinRedirected() && !isolated;
  const stdin = streamStdin ? undefined : await readStdinIfRedirected();
  const req: ExecuteRequestInput = {
    cmd: o.cmd,
    cwd,
    env: { ...worldEnv(env, cwd), ...span.env },
    agent_id: env.SUBSTRATE_AGENT_ID || "human",
    isolated, // --isolated, or the policy's `commands.isolated` (issue 4)
    world: {
      // The policy decides the world's allowlist, limits and session reuse (spec:
      // WorldSpec::from_policy). Network isolation is on unless the policy or config.toml
      // turns it off (either one suffices; `substrate world doctor` shows the result).
      ...(gate.policy ? worldSpecFromPolicy(gate.policy, projectDirFor(cwd)) : {}),
      project_dir: projectDirFor(cwd),
      isolate_network: cfg.isolate_network && (gate.policy ? gate.policy.doc.world.isolate_network : true),
      fs_mode: cfg.world_fs_mode,
      fs_isolation: cfg.world_fs_isolation,
    },
    ...(stdin && stdin.length ? { stdin_b64: Buffer.from(stdin).toString("base64") } : {}),
  };

  // Policy (issue 4): an agent that cannot run isolated worlds refuses `isolated: true` before
  // anything runs; then enforce mode stops (126) and observe mode runs it unisolated.
  const execute = async (client: AgentClient): Promise<number> => {
    try {
      return await streamExecute(client, req, span.onResult);
    } catch (e) {
      if (!(req.isolated && e instanceof AgentApiError && e.code === "unsupported")) throw e;
      const stop = hostGate("the world agent cannot run isolated worlds");
      return stop ?? (await streamExecute(client, { ...req, isolated: false }, span.onResult));
    }
  };

  if (streamStdin) {
    try {
      return await span.finish(runWithStreamedStdin(o.cmd, cwd, { ...env, ...span.env }, req, cfg, backend, hostGate));
    } catch (e) {
      throw span.fail(e);
    }
  }

  // Hot path: the agent is usually there; don't pay a probe round trip to find out.
  const optimistic = backend.optimisticClient?.();
  if (optimistic) {
    try {
      return await span.finish(execute(optimistic));
    } catch (e) {
      // Refused before anything ran: start/locate the agent below. Anything else is real.
      if (!(e instanceof AgentUnreachable)) throw span.fail(mapClientError(e));
    }
  }
  const ready = await readyOrFallback(cfg, env, backend).catch((e) => Promise.reject(span.fail(e)));
  if (!ready) return span.finish(hostGate() ?? runOnHost(o.cmd, cwd, { ...env, ...span.env }, stdin));
  try {
    return await span.finish(execute(ready.client));
  } catch (e) {
    throw span.fail(mapClientError(e));
  }
}

/** Issue 6: `-c` with piped stdin through /v1/stream in pipe mode (src/cli/_pty.ts). */
async function runWithStreamedStdin(
  cmd: string,
  cwd: string,
  env: NodeJS.ProcessEnv,
  req: ExecuteRequestInput,
  cfg: EffectiveConfig,
  backend: WorldBackend,
  hostGate: () => number | null,
): Promise<number> {
  const { runStream, StreamConnectError } = await import("./_pty.ts");
  const start = { type: "start" as const, cmd, cwd, env: req.env, agent_id: req.agent_id, world: req.world, pty: false };
  const optimistic = backend.optimisticClient?.();
  if (optimistic) {
    try {
      return await runStream({ socketPath: optimistic.socketPath, start });
    } catch (e) {
      if (!(e instanceof StreamConnectError)) throw e; // nothing ran, stdin untouched
    }
  }
  const ready = await readyOrFallback(cfg, env, backend);
  if (!ready) return hostGate() ?? runOnHost(cmd, cwd, env);
  try {
    return await runStream({ socketPath: ready.socketPath, start });
  } catch (e) {
    if (e instanceof StreamConnectError) throw new CliError(ExitCode.UNAVAILABLE, e.message, "run `substrate world doctor`");
    throw e;
  }
}

/**
 * The approval prompt's diff preview ("writes 134 files under node_modules"): the command runs
 * once in an isolated overlay world with no network (so the preview itself has no effect
 * outside the overlay), its fs diff is returned and the result discarded.
 */
export async function dryRunDiff(cmd: string, cwd: string, cfg: EffectiveConfig, env: NodeJS.ProcessEnv): Promise<FsDiff> {
  const ready = await selectBackend(cfg, env).ensureReady({ start: true });
  const r = await ready.client.execute({
    cmd,
    cwd,
    env: worldEnv(env, cwd),
    agent_id: env.SUBSTRATE_AGENT_ID || "human",
    isolated: true,
    world: { project_dir: projectDirFor(cwd), isolate_network: true, allowed_domains: [] },
  });
  await ready.client.discardFsDiff(r.span_id).catch(() => {});
  return r.fs_diff ?? { writes: [], mods: [], deletes: [] };
}

/** Stream one execute to this terminal; resolves with the command's exit code. */
async function streamExecute(client: AgentClient, req: ExecuteRequestInput, onResult?: (r: ExecuteResponse) => void): Promise<number> {
  for await (const f of client.executeStream(req)) {
    if (f.type === "stdout") process.stdout.write(Buffer.from(f.data_b64, "base64"));
    else if (f.type === "stderr") process.stderr.write(Buffer.from(f.data_b64, "base64"));
    else if (f.type === "result") {
      onResult?.(f.result); // trace: world id, scopes, fs diff (issue 5)
      if (f.result.fs_diff) reportIsolated(f.result);
      return f.result.exit;
    }
  }
  throw new CliError(ExitCode.UNAVAILABLE, "the world agent closed the stream before the command finished", "run `substrate world doctor`");
}

/** One line after an isolated command: what it changed and how to land or drop it. */
function reportIsolated(r: ExecuteResponse): void {
  const d = r.fs_diff!;
  const counts = `${d.writes.length} written, ${d.mods.length} modified, ${d.deletes.length} deleted${d.truncated ? " (truncated)" : ""}`;
  if (d.writes.length + d.mods.length + d.deletes.length === 0) say(`isolated: no changes (${r.span_id})`);
  else say(`isolated: ${counts} — \`substrate diff ${r.span_id}\` to review, \`substrate apply ${r.span_id}\` to land, \`substrate discard ${r.span_id}\` to drop`);
}

function mapClientError(e: unknown): unknown {
  if (e instanceof AgentApiError) return new CliError(e.status === 400 ? ExitCode.USAGE : ExitCode.UNAVAILABLE, e.message, e.hint);
  if (e instanceof AgentUnreachable) return new CliError(ExitCode.UNAVAILABLE, e.message, "run `substrate world doctor`");
  return e;
}
