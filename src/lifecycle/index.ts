/**
 * Linux host lifecycle (issue 10): `substrate world warm|stop|restart|status`.
 *
 *   runLifecycle("warm", ctx)  → { report: LifecycleReport, exitCode }
 *   worldStatus(ctx)           → { report: WorldStatusReport, exitCode }
 *
 * Mode per machine and user (context.ts resolveTarget): root + systemd → socket_activation
 * (systemd.ts), root without systemd → manual (manual.ts), not root → rootless (rootless.ts).
 * `stop`/`restart` act on whatever mode is running now (status detection), so a manual
 * agent is never "stopped" through systemctl and vice versa.
 */
import { accessSync, constants } from "node:fs";
import { DEFAULT_SOCKET, effectiveConfig, rootlessSocketPath, substrateHome } from "../config.ts";
import { LifecycleReport, WorldStatusReport, type Capabilities, type LifecycleMode, type WorldSummary } from "../contract/index.ts";
import { AgentClient } from "../api/client.ts";
import { pidFileFor } from "./paths.ts";
import { Systemctl } from "../sys/systemctl.ts";
import { agentPid } from "./agent-process.ts";
import { Actions, isRoot, LifecycleError, probe, resolveTarget, rootlessPaths, socketInfo, vstr, wantedAgent, type LifecycleContext } from "./context.ts";
import { restartManual, stopManual, warmManual } from "./manual.ts";
import { restartRootless, stopRootless, warmRootless } from "./rootless.ts";
import { restartSystemd, SERVICE_UNIT, stopSystemd, unitStates, warmSystemd, type ModeResult } from "./systemd.ts";

export { LifecycleError, quietProgress, type LifecycleContext, type Progress } from "./context.ts";

export type LifecycleCommand = "warm" | "stop" | "restart";

/** Which mode runs the agent on this socket right now (null: none found). */
export function runningMode(socketPath: string, env: NodeJS.ProcessEnv): { mode: LifecycleMode | null; pid: number | null } {
  if (socketPath === rootlessSocketPath(env) || (!isRoot() && socketPath.startsWith(`${substrateHome(env)}/`))) {
    return { mode: "rootless", pid: agentPid(rootlessPaths(env, socketPath).pidFile, socketPath) };
  }
  if (socketPath === DEFAULT_SOCKET) {
    const units = unitStates();
    if (units && (units.socket === "active" || units.service === "active")) {
      let pid: number | null = null;
      try {
        pid = new Systemctl().show(SERVICE_UNIT).MainPID || null;
      } catch {}
      return { mode: "socket_activation", pid };
    }
  }
  const pid = agentPid(pidFileFor(socketPath), socketPath);
  if (pid !== null) return { mode: "manual", pid };
  // A non-root user's agent on an explicit socket outside ~/.substrate is still rootless.
  const rl = agentPid(rootlessPaths(env, socketPath).pidFile, socketPath);
  if (rl !== null) return { mode: "rootless", pid: rl };
  return { mode: null, pid: null };
}

/**
 * A non-root user's warm first looks for a system agent on /run/substrate.sock: one that
 * answers is used as is; one that refuses us (EACCES: not in group substrate yet) is an error
 * with the group fix, not a reason to start a second, rootless agent behind its back.
 */
async function systemAgent(env: NodeJS.ProcessEnv): Promise<{ mode: LifecycleMode; pid: number | null; version: string | null } | null> {
  const sock = socketInfo(DEFAULT_SOCKET);
  if (!sock.exists) return null;
  const caps = await probe(DEFAULT_SOCKET);
  if (caps) {
    const running = runningMode(DEFAULT_SOCKET, env);
    return { mode: running.mode ?? "manual", pid: running.pid, version: vstr(caps.agent) };
  }
  try {
    accessSync(DEFAULT_SOCKET, constants.W_OK);
  } catch {
    throw new LifecycleError(
      3,
      `a system agent's socket ${DEFAULT_SOCKET} (${sock.owner}:${sock.group} ${sock.mode}) refuses you`,
      `sudo usermod -aG ${sock.group ?? "substrate"} "$USER", then log out and in   (or your own agent: substrate world warm --mode rootless)`,
    );
  }
  return null; // a stale socket file: nobody listens; rootless as usual
}

export async function runLifecycle(command: LifecycleCommand, ctx: LifecycleContext): Promise<{ report: LifecycleReport; exitCode: number }> {
  const t0 = performance.now();
  let mode: LifecycleMode = "manual";
  let socketPath = DEFAULT_SOCKET;
  let expected: string | null = null;
  try {
    expected = vstr(wantedAgent(ctx.env).version);
    const target = resolveTarget(ctx);
    mode = target.mode;
    socketPath = target.socketPath;
    // stop/restart act on what runs now; warm on what this machine and user call for.
    if (command !== "warm" && !ctx.mode) {
      const running = runningMode(socketPath, ctx.env);
      if (running.mode) mode = running.mode;
    }
    ctx.progress.step(`${command}: ${mode} mode on ${socketPath}${command === "warm" ? ` (${target.why})` : ""}`);
    let r: ModeResult;
    const system = command === "warm" && mode === "rootless" && !ctx.mode && socketPath === rootlessSocketPath(ctx.env) ? await systemAgent(ctx.env) : null;
    if (system) {
      // "Not root, no agent running: rootless mode" — an agent of the system already serves us.
      mode = system.mode;
      socketPath = DEFAULT_SOCKET;
      r = { actions: new Actions(), pid: system.pid, agentVersion: system.version, guidance: [`the system agent serves ${DEFAULT_SOCKET}; nothing to start (your own rootless agent instead: substrate world warm --mode rootless)`] };
    } else if (mode === "socket_activation") r = command === "warm" ? await warmSystemd(ctx) : command === "stop" ? await stopSystemd(ctx) : await restartSystemd(ctx);
    else if (mode === "manual") r = command === "warm" ? await warmManual(ctx, socketPath) : command === "stop" ? await stopManual(ctx, socketPath) : await restartManual(ctx, socketPath);
    else r = command === "warm" ? await warmRootless(ctx, socketPath) : command === "stop" ? await stopRootless(ctx, socketPath) : await restartRootless(ctx, socketPath);
    const report = LifecycleReport.parse({
      schema_version: 1,
      command,
      ok: true,
      backend: "linux-local",
      mode,
      socket_path: socketPath,
      pid: r.pid,
      actions: r.actions.list,
      agent_version: r.agentVersion,
      expected_agent_version: expected,
      guidance: r.guidance,
      duration_ms: Math.round(performance.now() - t0),
    });
    return { report, exitCode: 0 };
  } catch (e) {
    if (!(e instanceof LifecycleError)) throw e;
    const report = LifecycleReport.parse({
      schema_version: 1,
      command,
      ok: false,
      backend: "linux-local",
      mode,
      socket_path: socketPath,
      pid: null,
      actions: [],
      agent_version: null,
      expected_agent_version: expected,
      guidance: [],
      duration_ms: Math.round(performance.now() - t0),
      error: { message: e.message, hint: e.hint },
    });
    return { report, exitCode: e.exitCode };
  }
}

/** Kernel features the worlds run without, one line each (from GET /v1/capabilities). */
export function degradedFeatures(c: Capabilities): string[] {
  const f = c.features;
  const out: string[] = [];
  if (!f.landlock.supported) out.push("landlock: unsupported by this kernel; writes are bounded only by the world's mounts");
  if (!f.overlay) out.push(f.fuse_overlayfs ? "overlayfs: missing; isolated worlds use fuse-overlayfs (slower)" : "overlayfs: missing and no fuse-overlayfs; isolated execution unavailable");
  if (f.cgroup === "none") out.push("cgroups: none usable; worlds run without CPU/memory/pids limits");
  else if (f.cgroup === "v1" || f.cgroup === "hybrid") out.push(`cgroups: ${f.cgroup} layout; limits use the v1 controllers`);
  if (!f.nft) out.push("nft: missing; network allowlists cannot be enforced");
  if (!f.seccomp) out.push("seccomp: unavailable");
  if (!f.namespaces.net) out.push("network namespaces: unavailable; worlds share the host network");
  if (!f.namespaces.user) out.push("user namespaces: unavailable");
  return out;
}

export async function worldStatus(ctx: LifecycleContext): Promise<{ report: WorldStatusReport; exitCode: number }> {
  const socketPath = effectiveConfig({ env: ctx.env }).socket_path;
  const embedded = vstr(wantedAgent(ctx.env).version);
  const running = runningMode(socketPath, ctx.env);
  const caps = await probe(socketPath);
  let worlds: WorldSummary[] = [];
  let error: { message: string; hint: string } | undefined;
  if (caps) {
    try {
      worlds = (await new AgentClient(socketPath).listWorlds()).map((w) => ({
        id: w.id,
        project_dir: w.project_dir,
        isolated: w.isolated,
        isolate_network: w.isolate_network,
        age_ms: w.age_ms,
        execs: w.execs,
        ...(w.limits ? { limits: w.limits } : {}),
        ...(w.mounts ? { mounts: w.mounts } : {}),
        ...(w.warnings?.length ? { warnings: w.warnings } : {}),
      }));
    } catch (e) {
      error = { message: `GET /v1/worlds failed: ${(e as Error).message}`, hint: "substrate world restart" };
    }
  } else {
    const sock = socketInfo(socketPath);
    error = sock.exists
      ? { message: `no agent answers on ${socketPath} (stale socket, or no permission)`, hint: "substrate world restart   # or, for EACCES: sudo usermod -aG substrate \"$USER\" and log in again" }
      : { message: `no agent socket at ${socketPath}`, hint: isRoot() ? "substrate world warm" : "substrate world warm   # rootless mode as you, or: sudo substrate world warm" };
  }
  const mode = running.mode ?? (caps ? (isRoot() || socketPath === DEFAULT_SOCKET ? "manual" : "rootless") : null);
  const report = WorldStatusReport.parse({
    schema_version: 1,
    backend: "linux-local",
    mode,
    running: caps !== null,
    agent: {
      version: vstr(caps?.agent),
      embedded_version: embedded,
      version_match: caps && embedded ? vstr(caps.agent) === embedded : null,
      pid: running.pid,
      uptime_ms: caps?.uptime_ms ?? null,
    },
    socket: socketInfo(socketPath),
    units: socketPath === DEFAULT_SOCKET ? unitStates() : null,
    worlds,
    degraded: caps ? degradedFeatures(caps) : [],
    ...(caps?.worlds.idle ? { idle: caps.worlds.idle } : {}), // issue 18.6 (DEPLOY)
    ...(error ? { error } : {}),
  });
  return { report, exitCode: caps ? 0 : 3 };
}
