/**
 * Rootless mode: no root, no system agent. The agent runs as the user, listens on
 * ~/.substrate/run/substrate.sock (dir 0700: only the user may connect), keeps its pid file,
 * log and world state beside it, and builds every world inside a user namespace where the
 * user is root (agent/world/session.ts adds `--user --map-root-user` when the agent is not
 * root). Overlay needs `userxattr` there; cgroup limits apply only where the user's cgroup is
 * delegated, otherwise the world runs without limits and says so.
 *
 * The one thing that can make this mode impossible is the kernel or an LSM refusing
 * unprivileged user namespaces (Debian's `kernel.unprivileged_userns_clone=0`, Ubuntu
 * 23.10+'s AppArmor `kernel.apparmor_restrict_unprivileged_userns=1`): then warm fails with
 * the exact setting and the exact fix, before starting anything.
 */
import { chmodSync, mkdirSync } from "node:fs";
import { userNamespaceSupport } from "../../agent/world/userns.ts";
import { agentCommand } from "../embedded.ts";
import { agentInstallDir } from "./paths.ts";
import { AgentStartError, startDetachedAgent } from "./agent-process.ts";
import { Actions, LifecycleError, rootlessPaths, type LifecycleContext } from "./context.ts";
import { stopBackground, warmBackground } from "./manual.ts";
import type { ModeResult } from "./systemd.ts";

/** Fails with the blocking sysctl/profile and its fix when user namespaces are refused. */
export function requireUserNamespaces(): void {
  const s = userNamespaceSupport();
  if (!s.available)
    throw new LifecycleError(
      4,
      `rootless mode needs unprivileged user namespaces, and this machine refuses them: ${s.reason}`,
      `${s.fix}   (or use a system agent: sudo substrate world warm)`,
    );
}

export async function warmRootless(ctx: LifecycleContext, socketPath?: string): Promise<ModeResult> {
  const paths = rootlessPaths(ctx.env, socketPath);
  requireUserNamespaces();
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  chmodSync(paths.dir, 0o700);
  const r = await warmBackground(ctx, {
    socketPath: paths.socket,
    pidFile: paths.pidFile,
    logFile: paths.logFile,
    start: async () => {
      const argv = await agentCommand(agentInstallDir(ctx.env), ctx.env);
      try {
        // The agent's root-only default dirs (/run/substrate, /var/lib/substrate/overlay) become the user's.
        const env = { ...ctx.env, SUBSTRATE_OVERLAY_DIR: ctx.env.SUBSTRATE_OVERLAY_DIR ?? paths.overlayDir };
        return await startDetachedAgent({ argv, socketPath: paths.socket, pidFile: paths.pidFile, logFile: paths.logFile, stateDir: paths.stateDir, env });
      } catch (e) {
        if (e instanceof AgentStartError) throw new LifecycleError(3, e.message, `see ${e.logFile}`);
        throw e;
      }
    },
  });
  if (r.actions.has("started_agent")) {
    r.guidance.push(
      `rootless mode: the agent runs as you (pid ${r.pid}); worlds run in a user namespace. It does not survive logout or reboot: run \`substrate world warm\` again (a systemd --user unit with \`loginctl enable-linger $USER\` can keep it up)`,
    );
    r.guidance.push("rootless limits: world cgroup limits apply only where your cgroup is delegated; a world's network namespace gets no veth to the host without root, so isolated worlds have no egress at all");
  }
  return r;
}

export const stopRootless = (ctx: LifecycleContext, socketPath?: string): Promise<ModeResult> => {
  const p = rootlessPaths(ctx.env, socketPath);
  return stopBackground(ctx, p.socket, p.pidFile);
};

export async function restartRootless(ctx: LifecycleContext, socketPath?: string): Promise<ModeResult> {
  const stopped = await stopRootless(ctx, socketPath);
  const warm = await warmRootless(ctx, socketPath);
  return { ...warm, actions: Actions.concat(stopped.actions, warm.actions), guidance: [...stopped.guidance, ...warm.guidance] };
}

/**
 * For `substrate -c` / shell as a non-root user with no agent (linux-local ensureReady): warm
 * rootless mode quietly; failures stay LifecycleError (message + the exact fix) for the backend.
 */
export async function startRootlessForCli(env: NodeJS.ProcessEnv): Promise<{ socketPath: string; note: string }> {
  const { quietProgress } = await import("./context.ts");
  const r = await warmRootless({ env, progress: quietProgress });
  const p = rootlessPaths(env);
  return { socketPath: p.socket, note: `started a rootless world agent ${r.agentVersion ?? ""} on ${p.socket} (pid ${r.pid}); stop it with: substrate world stop` };
}
