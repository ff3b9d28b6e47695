/**
 * Manual mode (root without systemd: containers, CI): the agent runs in the background,
 * started by agent-process.ts's `startManualAgent` (pid file `pidFileFor(socket)`, log
 * /run/substrate/agent.log). `stop` signals exactly the pid in that file after checking its
 * /proc/PID/cmdline is an agent for this socket (agent-process.ts).
 *
 * Rootless mode shares the same shape with the user's paths (rootless.ts).
 */
import { LOG_FILE, pidFileFor } from "./paths.ts";
import { AgentStartError, agentPid, startManualAgent, stopAgent } from "./agent-process.ts";
import { Actions, isRoot, LifecycleError, probe, vstr, wantedAgent, type LifecycleContext } from "./context.ts";
import type { ModeResult } from "./systemd.ts";
import { versionString } from "../version.ts";

/**
 * Shared by manual and rootless warm: an agent that answers and is the wanted build is left
 * alone; one of another build is replaced when it is ours (pid file verified), else reported.
 */
export async function warmBackground(
  ctx: LifecycleContext,
  o: { socketPath: string; pidFile: string; logFile: string; start: () => Promise<number> },
): Promise<ModeResult> {
  const actions = new Actions();
  const guidance: string[] = [];
  const want = wantedAgent(ctx.env);
  const caps = await probe(o.socketPath);
  if (caps) {
    const ours = agentPid(o.pidFile, o.socketPath);
    const current = want.version === null || vstr(caps.agent) === vstr(want.version);
    if (current) return { actions, pid: ours, agentVersion: vstr(caps.agent), guidance };
    if (ours === null)
      throw new LifecycleError(
        3,
        `an agent of another build (${vstr(caps.agent)}) serves ${o.socketPath} and was not started by substrate world warm (no matching pid file ${o.pidFile})`,
        `stop that agent yourself, then: substrate world warm   (wanted: ${vstr(want.version)})`,
      );
    ctx.progress.step(`replacing agent ${vstr(caps.agent)} (pid ${ours}) with ${vstr(want.version)}`);
    await stopAgent(o.pidFile, o.socketPath);
    actions.add("stopped_agent");
  } else {
    const stale = await stopAgent(o.pidFile, o.socketPath);
    if (stale.stalePidFile) actions.add("removed_stale_pid_file");
    if (stale.outcome !== "not_running") actions.add("stopped_agent"); // alive but not answering: hung
  }
  ctx.progress.step(`starting the world agent on ${o.socketPath}`);
  const pid = await o.start();
  actions.add("started_agent");
  const after = await probe(o.socketPath, 10_000);
  return { actions, pid, agentVersion: vstr(after?.agent), guidance };
}

export async function warmManual(ctx: LifecycleContext, socketPath: string): Promise<ModeResult> {
  if (!isRoot()) throw new LifecycleError(4, "manual mode runs the agent as root", "sudo substrate world warm   # or rootless: substrate world warm (as yourself)");
  const r = await warmBackground(ctx, {
    socketPath,
    pidFile: pidFileFor(socketPath),
    logFile: LOG_FILE,
    start: async () => {
      try {
        return (await startManualAgent(socketPath, ctx.env)).pid;
      } catch (e) {
        if (e instanceof AgentStartError) throw new LifecycleError(3, e.message, `see ${e.logFile}`);
        throw e;
      }
    },
  });
  if (r.actions.has("started_agent"))
    r.guidance.push(`manual mode: nothing restarts the agent after a reboot or crash; run \`substrate world warm\` again (or \`substrate -c\` as root starts it on demand)`);
  return r;
}

export async function stopBackground(ctx: LifecycleContext, socketPath: string, pidFile: string): Promise<ModeResult> {
  const actions = new Actions();
  const r = await stopAgent(pidFile, socketPath);
  if (r.stalePidFile) actions.add("removed_stale_pid_file");
  const guidance: string[] = [];
  if (r.outcome !== "not_running") {
    ctx.progress.ok(`stopped the world agent (pid ${r.pid}${r.outcome === "killed" ? ", SIGKILL after it ignored SIGTERM" : ""})`);
    actions.add("stopped_agent");
  } else if (await probe(socketPath)) {
    guidance.push(`an agent answers on ${socketPath} but it was not started by substrate (no matching pid file ${pidFile}); it was left running`);
  }
  return { actions, pid: r.pid, agentVersion: null, guidance };
}

export const stopManual = (ctx: LifecycleContext, socketPath: string): Promise<ModeResult> => stopBackground(ctx, socketPath, pidFileFor(socketPath));

export async function restartManual(ctx: LifecycleContext, socketPath: string): Promise<ModeResult> {
  const stopped = await stopManual(ctx, socketPath);
  const warm = await warmManual(ctx, socketPath);
  return { ...warm, actions: Actions.concat(stopped.actions, warm.actions), guidance: [...stopped.guidance, ...warm.guidance] };
}

export const expectedVersion = (env: NodeJS.ProcessEnv): string | null => {
  const v = wantedAgent(env).version;
  return v ? versionString(v) : null;
};
