/**
 * execute(plan): run a planned command, once, and write its host command span.
 *
 *   gate said deny / approval_required → nothing runs (the outcome says why)
 *   world disabled                     → isolation-unavailable rule → host
 *   optimistic client (no probe)       → refused before anything ran → ensureReady({start})
 *   ensureReady says unavailable       → one warning → isolation-unavailable rule → host
 *                                        (unless the world is required: exit 3)
 *   isolated refused as unsupported    → isolation-unavailable rule → the same world, unisolated
 *
 * io "pipes" uses the NDJSON execute (or /v1/stream in pipe mode when stdin is redirected and
 * the command is not isolated, so stdin is forwarded as it arrives); io "pty" uses /v1/stream
 * with a PTY (isolated commands have no PTY path: they run with pipes, said once); io
 * "buffered" captures output (NDJSON execute; /v1/stream in pipe mode when it can be aborted).
 */
import { fstatSync } from "node:fs";
import type { ExecuteRequestInput, ExecuteResponse } from "../contract/execute.ts";
// api/client.ts (its zod contract) and contract/net.ts load only on the NDJSON wire: the
// /v1/stream wire (a non-TTY `-c`, --pty, the shell) never needs them (bench/hotpath.ts).
import type { AgentClient } from "../api/client.ts";
type ClientModule = typeof import("../api/client.ts");
import { WorldUnavailable, type ReadyWorld, type WorldBackend } from "../world/backend.ts";
import { hostBackend, UnsupportedPlatform } from "../world/select.ts";
import { CliError, ExitCode } from "../errors.ts";
import { versionInfo } from "../version.ts";
import type { CommandSpan } from "../trace/command-span.ts";
import type { RunOutcome } from "./intent.ts";
import type { Plan } from "./plan.ts";
import { isolationUnavailable } from "./gate.ts";
import { mark } from "./timing.ts";

/** Is stdin a pipe, file or socket (forwarded to the command), not a terminal or /dev/null? */
function stdinRedirected(fd = 0): boolean {
  try {
    const st = fstatSync(fd);
    return st.isFIFO() || st.isFile() || st.isSocket();
  } catch {
    return false;
  }
}

/** Ready world, or null = run on the host (after one warning line). */
export async function readyOrFallback(p: Pick<Plan, "cfg" | "say">, backend: WorldBackend): Promise<ReadyWorld | null> {
  try {
    const ready = await backend.ensureReady({ start: true });
    if (ready.note) p.say(ready.note);
    return ready;
  } catch (e) {
    if (!(e instanceof WorldUnavailable)) throw e;
    if (e instanceof UnsupportedPlatform) throw new CliError(ExitCode.UNSUPPORTED, e.message, e.hint);
    if (p.cfg.world_fs_require_world) throw new CliError(ExitCode.UNAVAILABLE, `world required but unavailable: ${e.message}`, e.hint);
    p.say(`world unavailable (${e.message}); running on the host — ${e.hint}`);
    return null;
  }
}

export function mapClientError(e: unknown, { AgentApiError, AgentUnreachable }: ClientModule): unknown {
  if (e instanceof AgentApiError) return new CliError(e.status === 400 ? ExitCode.USAGE : e.code === "unsupported" ? ExitCode.UNSUPPORTED : ExitCode.UNAVAILABLE, e.message, e.hint);
  if (e instanceof AgentUnreachable) return new CliError(ExitCode.UNAVAILABLE, e.message, "run `substrate world doctor`");
  return e;
}

export async function execute(p: Plan): Promise<RunOutcome> {
  const g = p.gate;
  const base = { session_id: p.span.session_id, decision: g.action, policy_id: g.policy_id } as const;
  if (g.action === "deny") return { ...base, exit: g.exitCode ?? ExitCode.DENIED, ran: "denied", ...(g.message ? { message: g.message } : {}), ...(g.hint ? { hint: g.hint } : {}) };
  if (g.action === "approval_required")
    return { ...base, exit: ExitCode.DENIED, ran: "approval_required", ...(g.message ? { message: g.message } : {}), ...(g.hint ? { hint: g.hint } : {}), ...(g.approval ? { approval: g.approval } : {}) };

  const intent = p.intent;
  const stderr = intent.stdio?.stderr ?? process.stderr;
  const io = intent.io;
  const pty = io === "pty" && !p.isolated;
  if (io === "pty" && p.isolated) p.say("isolated commands run without a PTY");

  // Trace: command_start now, command_complete on every exit path (span.finish / span.fail).
  const { CommandSpan, worldImageVersion } = await import("../trace/command-span.ts").then(async (m) => ({ ...m, ...(await import("../trace/context.ts")) }));
  const span: CommandSpan = CommandSpan.start({
    cmd: p.cmd,
    cwd: p.cwd,
    env: p.env,
    component: intent.component,
    agent_id: p.agentId,
    span_id: p.spanId,
    session_id: p.span.session_id,
    ...(p.span.parent_span ? { parent_span: p.span.parent_span } : {}),
    policy_id: g.policy_id,
    ...(g.policy_commit ? { policy_commit: g.policy_commit } : {}),
    world_image_version: worldImageVersion(versionInfo()), // the embedded agent = the one we run
    ...(io === "pty" ? { pty } : {}),
  });
  mark("span");

  // buffered io: collect output
  const out: Uint8Array[] = [];
  const err: Uint8Array[] = [];
  const collect = io === "buffered";
  const onOut = (b: Uint8Array) => {
    if (collect) out.push(b);
    intent.onOutput?.("stdout", b);
  };
  const onErr = (b: Uint8Array) => {
    if (collect) err.push(b);
    intent.onOutput?.("stderr", b);
  };
  let agentResult: ExecuteResponse | undefined;
  let ran: RunOutcome["ran"] = "world";
  const done = (exit: number): RunOutcome => ({
    ...base,
    exit,
    ran,
    span_id: p.spanId,
    ...(agentResult ? { world_id: agentResult.world_id, agent_span_id: agentResult.span_id, scopes_used: agentResult.scopes_used, ...(agentResult.fs_diff ? { fs_diff: agentResult.fs_diff } : {}) } : {}),
    ...(collect ? { stdout: Buffer.concat(out), stderr: Buffer.concat(err) } : {}),
  });

  // The host: the same command, io and env (span env included, so nested calls link).
  const hostArgv = "argv" in intent.what ? intent.what.argv : ["/bin/bash", "-c", intent.what.cmd];
  const onHost = async (stdin?: Uint8Array, why?: string): Promise<number> => {
    const stop = await isolationUnavailable(g, stderr, why);
    if (stop !== null) return stop;
    ran = "host";
    const { runOnHost } = await import("./io.ts");
    return runOnHost({
      argv: hostArgv,
      cwd: p.cwd,
      env: { ...p.env, ...p.spanEnv },
      ...(stdin ?? intent.stdin ? { stdin: stdin ?? intent.stdin } : {}),
      ...(collect ? { onStdout: onOut, onStderr: onErr } : {}),
      ...(intent.signal ? { signal: intent.signal } : {}),
    });
  };

  try {
    if (!p.cfg.world_enabled) return done(await span.finish(onHost()));
    const backend = hostBackend(p.cfg, p.env as NodeJS.ProcessEnv, p.projectDir);

    // Which wire: /v1/stream (pty; pipes with redirected stdin; abortable buffered) or NDJSON execute.
    const redirected = io === "pipes" && intent.stdin === undefined && stdinRedirected();
    const forwarding = io === "pipes" && (intent.forwardSignals?.length ?? 0) > 0 && !(intent.stdio?.stdin ?? process.stdin).isTTY; // AGENTS (issue 16)
    const useStream = !p.isolated && (pty || redirected || forwarding || (io === "buffered" && intent.signal !== undefined));
    if (useStream) {
      const { runStream, StreamConnectError } = await import("./io.ts");
      const start = {
        type: "start" as const,
        ...("argv" in intent.what ? { argv: intent.what.argv } : { cmd: intent.what.cmd }),
        cwd: p.cwd,
        env: p.worldEnv,
        agent_id: p.agentId,
        world: p.world,
        pty,
      };
      const run = (addr: string) =>
        streamRun(addr).finally(() => mark("result"));
      const streamRun = (addr: string) =>
        runStream({
          socketPath: addr,
          start,
          ...(intent.stdio?.stdin ? { stdin: intent.stdio.stdin } : {}),
          ...(intent.stdio?.stdout ? { stdout: intent.stdio.stdout } : {}),
          ...(intent.stdio?.stderr ? { stderr: intent.stdio.stderr } : {}),
          ...(collect ? { onStdout: onOut, onStderr: onErr, input: intent.stdin ?? new Uint8Array() } : {}),
          ...(intent.ptyFilter ? { filter: intent.ptyFilter } : {}),
          ...(intent.signal ? { signal: intent.signal } : {}),
          ...(forwarding ? { forwardSignals: intent.forwardSignals } : {}),
          // (AGENTS, issue 16) the stream names the world and the agent's span at `started`:
          // the host span and the outcome carry them as an NDJSON result would
          onStarted: (m: { span_id: string; world_id: string }) => {
            agentResult = { exit: 0, span_id: m.span_id, world_id: m.world_id, stdout_b64: "", stderr_b64: "", scopes_used: [] } as ExecuteResponse;
            span.onResult(agentResult);
          },
        });
      const optimistic = backend.optimisticAddress?.() ?? backend.optimisticClient?.()?.socketPath;
      if (optimistic) {
        try {
          return done(await span.finish(run(optimistic)));
        } catch (e) {
          if (!(e instanceof StreamConnectError)) throw e; // nothing ran, stdin untouched
        }
      }
      const ready = await readyOrFallback(p, backend);
      if (!ready) return done(await span.finish(onHost()));
      try {
        return done(await span.finish(run(ready.socketPath)));
      } catch (e) {
        if (e instanceof StreamConnectError) throw new CliError(ExitCode.UNAVAILABLE, e.message, "run `substrate world doctor`");
        throw e;
      }
    }

    // NDJSON execute. Redirected stdin of an isolated command is read whole (no stream path).
    const clientModule = await import("../api/client.ts");
    const { AgentApiError, AgentUnreachable } = clientModule;
    const stdin = intent.stdin ?? (io !== "buffered" && stdinRedirected() ? new Uint8Array(await Bun.stdin.arrayBuffer()) : undefined);
    const req: ExecuteRequestInput = {
      ...("argv" in intent.what ? { argv: intent.what.argv } : { cmd: intent.what.cmd }),
      cwd: p.cwd,
      env: p.worldEnv,
      agent_id: p.agentId,
      isolated: p.isolated,
      world: p.world,
      ...(stdin && stdin.length ? { stdin_b64: Buffer.from(stdin).toString("base64") } : {}),
    };
    const write = (kind: "stdout" | "stderr", b: Buffer) => {
      if (collect) (kind === "stdout" ? onOut : onErr)(b);
      else (kind === "stdout" ? (intent.stdio?.stdout ?? process.stdout) : stderr).write(b);
      if (!collect && intent.onOutput) intent.onOutput(kind, b);
    };
    const streamExecute = async (client: AgentClient, r: ExecuteRequestInput): Promise<number> => {
      for await (const f of client.executeStream(r)) {
        if (f.type === "stdout") write("stdout", Buffer.from(f.data_b64, "base64"));
        else if (f.type === "stderr") write("stderr", Buffer.from(f.data_b64, "base64"));
        else if (f.type === "result") {
          mark("result");
          agentResult = f.result;
          span.onResult(f.result); // trace: world id, scopes, fs diff
          if (f.result.fs_diff && !collect) reportIsolated(p.say, f.result);
          // Issue 15 (EGRESS): one line at the end for what the world's gateway blocked.
          const blocked = f.result.egress ? (await import("../contract/net.ts")).blockedEgressLine(f.result.egress.blocked) : null; // issue 15 (EGRESS)
          if (blocked && !collect) p.say(blocked);
          return f.result.exit;
        }
      }
      throw new CliError(ExitCode.UNAVAILABLE, "the world agent closed the stream before the command finished", "run `substrate world doctor`");
    };
    // An agent that cannot run isolated worlds refuses `isolated: true` before anything runs;
    // then enforce mode stops (126) and observe mode runs it unisolated.
    const run = async (client: AgentClient): Promise<number> => {
      try {
        return await streamExecute(client, req);
      } catch (e) {
        if (!(req.isolated && e instanceof AgentApiError && e.code === "unsupported")) throw e;
        // asked for by the caller (--isolated, replay): never silently unisolated
        if (intent.isolated) throw e;
        const stop = await isolationUnavailable(g, stderr, "the world agent cannot run isolated worlds");
        return stop ?? (await streamExecute(client, { ...req, isolated: false }));
      }
    };
    // Hot path: the agent is usually there; don't pay a probe round trip to find out.
    const optimistic = backend.optimisticClient?.();
    if (optimistic) {
      try {
        return done(await span.finish(run(optimistic)));
      } catch (e) {
        // Refused before anything ran: start/locate the agent below. Anything else is real.
        if (!(e instanceof AgentUnreachable)) throw mapClientError(e, clientModule);
      }
    }
    const ready = await readyOrFallback(p, backend);
    if (!ready) return done(await span.finish(onHost(stdin)));
    try {
      return done(await span.finish(run(ready.client)));
    } catch (e) {
      throw mapClientError(e, clientModule);
    }
  } catch (e) {
    throw span.fail(e);
  }
}

/** One line after an isolated command: what it changed and how to land or drop it. */
function reportIsolated(say: (l: string) => void, r: ExecuteResponse): void {
  const d = r.fs_diff!;
  const counts = `${d.writes.length} written, ${d.mods.length} modified, ${d.deletes.length} deleted${d.truncated ? " (truncated)" : ""}`;
  if (d.writes.length + d.mods.length + d.deletes.length === 0) say(`isolated: no changes (${r.span_id})`);
  else say(`isolated: ${counts} — \`substrate diff ${r.span_id}\` to review, \`substrate apply ${r.span_id}\` to land, \`substrate discard ${r.span_id}\` to drop`);
}
