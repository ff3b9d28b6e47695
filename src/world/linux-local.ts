/**
 * Linux host backend: use the agent at the socket when one answers; otherwise start one —
 * as root the embedded agent in the background ("manual" mode: pid file under /run/substrate,
 * socket /run/substrate.sock), as a user the rootless agent on ~/.substrate/run/substrate.sock
 * (src/lifecycle/). warm/stop/restart/status are the lifecycle modes (src/lifecycle/index.ts).
 */
// api/client.ts (and its zod contract) only when a client is made: the /v1/stream wire needs an address only
import type { AgentClient as Client } from "../api/client.ts";
const clientModule = (): typeof import("../api/client.ts") => require("../api/client.ts");
import { rootlessSocketPath } from "../config.ts";
import { versionString } from "../version.ts";
import { isRoot } from "../lifecycle/paths.ts";
import { WorldUnavailable, type BackendAction, type BackendOptions, type BackendOutcome, type ReadyWorld, type WorldBackend } from "./backend.ts";

// The paths and the start of a background agent live in src/lifecycle (one copy for manual
// and rootless mode); re-exported for existing callers.
export { RUN_DIR, PID_FILE, LOG_FILE, agentInstallDir, pidFileFor } from "../lifecycle/paths.ts";
export { startManualAgent } from "../lifecycle/agent-process.ts";

export class LinuxLocalBackend implements WorldBackend {
  readonly name = "linux-local" as const;
  constructor(
    private readonly socketPath: string,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  optimisticClient(): Client {
    return new (clientModule().AgentClient)(this.socketPath);
  }

  optimisticAddress(): string {
    return this.socketPath;
  }

  async ensureReady(o: { start: boolean }): Promise<ReadyWorld> {
    const { AgentClient, AgentUnreachable } = clientModule();
    const client = new AgentClient(this.socketPath);
    try {
      await client.capabilities(3000);
      return { client, backend: this.name, socketPath: this.socketPath };
    } catch (e) {
      if (!(e instanceof AgentUnreachable)) throw e;
    }
    if (!o.start)
      throw new WorldUnavailable(`no world agent answers at ${this.socketPath}`, isRoot() ? "run `substrate world warm` to start it" : "run `substrate world warm` (rootless, as you) or `sudo substrate world warm`");
    const { LifecycleError } = await import("../lifecycle/context.ts");
    if (!isRoot()) {
      // Not root and no agent → rootless mode: an agent running as this user, worlds in a user
      // namespace. Only for the default sockets; an explicitly configured one that does not
      // answer stays an error.
      const mine = rootlessSocketPath(this.env);
      if (this.socketPath !== "/run/substrate.sock" && this.socketPath !== mine)
        throw new WorldUnavailable(`no world agent answers at ${this.socketPath}`, "start it (`substrate world warm`), or unset SUBSTRATE_WORLD_SOCKET / world.socket");
      const { startRootlessForCli } = await import("../lifecycle/rootless.ts");
      try {
        const r = await startRootlessForCli(this.env);
        return { client: new AgentClient(r.socketPath), backend: this.name, socketPath: r.socketPath, note: r.note };
      } catch (e) {
        if (e instanceof LifecycleError) throw new WorldUnavailable(e.message, e.hint);
        throw e;
      }
    }
    const { startManualAgent, AgentStartError } = await import("../lifecycle/agent-process.ts");
    try {
      const started = await startManualAgent(this.socketPath, this.env);
      return { client, backend: this.name, socketPath: this.socketPath, note: `started world agent ${versionString()} on ${this.socketPath} (pid ${started.pid})` };
    } catch (e) {
      if (e instanceof AgentStartError) throw new WorldUnavailable(e.message, `see ${e.logFile}`);
      throw e;
    }
  }

  async lifecycle(action: BackendAction, o: BackendOptions): Promise<BackendOutcome> {
    const { runLifecycle, worldStatus } = await import("../lifecycle/index.ts");
    const ctx = { env: this.env, progress: o.progress, ...(o.mode ? { mode: o.mode } : {}), writable: o.writable ?? [] };
    if (action === "status") {
      const { report, exitCode } = await worldStatus(ctx);
      return { kind: "linux-status", report, exitCode };
    }
    const { report, exitCode } = await runLifecycle(action, ctx);
    return { kind: "linux-lifecycle", report, exitCode };
  }
}
