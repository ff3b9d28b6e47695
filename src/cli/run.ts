/**
 * `substrate -c 'cmd'`: resolve config, make sure a world is ready, run the command in it
 * with output streamed to this terminal, exit with its exit code. World disabled → host.
 * World enabled but unavailable → one warning line and the host, unless required (exit 3).
 */
import { fstatSync } from "node:fs";
import type { EffectiveConfig, ExecuteRequestInput, ExecuteResponse } from "../contract/index.ts";
import { AgentApiError, AgentUnreachable, type AgentClient } from "../api/client.ts";
import { effectiveConfig } from "../config.ts";
import { WorldUnavailable, type ReadyWorld, type WorldBackend } from "../world/backend.ts";
import { selectBackend } from "./_backend.ts";
import { CliError, ExitCode, signalExit } from "./_errors.ts";
import { projectDirFor } from "./_project.ts";
import { versionInfo } from "../version.ts";

export interface RunOptions {
  cmd: string;
  worldFlag?: boolean;
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

/** Piped or redirected stdin is forwarded (read fully first); a terminal is not. */
async function readStdinIfRedirected(): Promise<Uint8Array | undefined> {
  try {
    const st = fstatSync(0);
    if (!st.isFIFO() && !st.isFile()) return undefined;
  } catch {
    return undefined;
  }
  return new Uint8Array(await Bun.stdin.arrayBuffer());
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
  const { decideForCli, isolationUnavailable, recordPolicyEvents } = await import("../broker/index.ts");
  const gate = await decideForCli({ cmd: o.cmd, cwd, isTTY: Boolean(process.stdin.isTTY), stdin: process.stdin, stderr: process.stderr });
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
  const stdin = await readStdinIfRedirected();
  const req: ExecuteRequestInput = {
    cmd: o.cmd,
    cwd,
    env: { ...worldEnv(env, cwd), ...span.env },
    agent_id: env.SUBSTRATE_AGENT_ID || "human",
    isolated: gate.action === "run_isolated", // policy `commands.isolated` (issue 4)
    world: {
      project_dir: projectDirFor(cwd),
      isolate_network: cfg.isolate_network,
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

/** Stream one execute to this terminal; resolves with the command's exit code. */
async function streamExecute(client: AgentClient, req: ExecuteRequestInput, onResult?: (r: ExecuteResponse) => void): Promise<number> {
  for await (const f of client.executeStream(req)) {
    if (f.type === "stdout") process.stdout.write(Buffer.from(f.data_b64, "base64"));
    else if (f.type === "stderr") process.stderr.write(Buffer.from(f.data_b64, "base64"));
    else if (f.type === "result") {
      onResult?.(f.result); // trace: world id, scopes, fs diff (issue 5)
      return f.result.exit;
    }
  }
  throw new CliError(ExitCode.UNAVAILABLE, "the world agent closed the stream before the command finished", "run `substrate world doctor`");
}

function mapClientError(e: unknown): unknown {
  if (e instanceof AgentApiError) return new CliError(e.status === 400 ? ExitCode.USAGE : ExitCode.UNAVAILABLE, e.message, e.hint);
  if (e instanceof AgentUnreachable) return new CliError(ExitCode.UNAVAILABLE, e.message, "run `substrate world doctor`");
  return e;
}
