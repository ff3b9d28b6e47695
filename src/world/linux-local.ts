/**
 * Linux host backend: use the agent at the socket when one answers; otherwise, as root,
 * start the embedded agent in the background ("manual" mode: pid file under /run/substrate,
 * socket /run/substrate.sock) and use it.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { AgentClient, AgentUnreachable } from "../api/client.ts";
import { agentCommand } from "../embedded.ts";
import { substrateHome } from "../config.ts";
import { versionString } from "../version.ts";
import { WorldUnavailable, type ReadyWorld, type WorldBackend } from "./backend.ts";

export const RUN_DIR = "/run/substrate";
export const PID_FILE = join(RUN_DIR, "agent.pid");
export const LOG_FILE = join(RUN_DIR, "agent.log");

const isRoot = () => process.getuid?.() === 0;

/** Where the embedded agent is written: versioned, so upgrades never overwrite a running one. */
export function agentInstallDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = isRoot() ? "/var/lib/substrate/bin" : join(substrateHome(env), "bin");
  return join(base, versionString());
}

/** The default socket's agent keeps /run/substrate/agent.pid; any other socket `<socket>.pid`. */
export const pidFileFor = (socketPath: string): string =>
  socketPath === "/run/substrate.sock" ? PID_FILE : `${socketPath}.pid`;

export interface StartedAgent {
  pid: number;
  socketPath: string;
}

/** Start an agent detached from us, wait until it answers, return its pid. */
export async function startManualAgent(socketPath: string, env: NodeJS.ProcessEnv = process.env): Promise<StartedAgent> {
  mkdirSync(RUN_DIR, { recursive: true, mode: 0o755 });
  const argv = await agentCommand(agentInstallDir(env), env);
  const logFd = openSync(LOG_FILE, "a", 0o640);
  const proc = Bun.spawn([...argv, "--listen", socketPath, "--pid-file", pidFileFor(socketPath)], {
    stdin: "ignore",
    stdout: logFd,
    stderr: logFd,
    detached: true,
    env: { ...env, LISTEN_FDS: "", LISTEN_PID: "", BUN_GC_TIMER_DISABLE: "1" },
  });
  closeSync(logFd);
  proc.unref();
  const client = new AgentClient(socketPath);
  const deadline = Date.now() + 15_000;
  let exited = false;
  void proc.exited.then(() => (exited = true));
  while (Date.now() < deadline) {
    try {
      await client.capabilities(1000);
      return { pid: proc.pid, socketPath };
    } catch (e) {
      if (!(e instanceof AgentUnreachable)) throw e;
    }
    if (exited) break;
    await Bun.sleep(25);
  }
  if (!exited) proc.kill("SIGTERM");
  const tail = existsSync(LOG_FILE) ? readFileSync(LOG_FILE, "utf8").trim().split("\n").slice(-3).join(" | ") : "";
  throw new WorldUnavailable(`the world agent did not start on ${socketPath}${tail ? `: ${tail}` : ""}`, `see ${LOG_FILE}`);
}

export class LinuxLocalBackend implements WorldBackend {
  readonly name = "linux-local" as const;
  constructor(
    private readonly socketPath: string,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  optimisticClient(): AgentClient {
    return new AgentClient(this.socketPath);
  }

  async ensureReady(o: { start: boolean }): Promise<ReadyWorld> {
    const client = new AgentClient(this.socketPath);
    try {
      await client.capabilities(3000);
      return { client, backend: this.name, socketPath: this.socketPath };
    } catch (e) {
      if (!(e instanceof AgentUnreachable)) throw e;
    }
    if (!o.start)
      throw new WorldUnavailable(`no world agent answers at ${this.socketPath}`, "run `substrate world warm` (as root) to start it");
    if (!isRoot()) {
      // Issue 10: not root and no agent → rootless mode (src/lifecycle/rootless.ts): an agent
      // running as this user, worlds in a user namespace. Only for the default sockets; an
      // explicitly configured one that does not answer stays an error.
      const { rootlessSocketPath } = await import("../config.ts");
      const mine = rootlessSocketPath(this.env);
      if (this.socketPath !== "/run/substrate.sock" && this.socketPath !== mine)
        throw new WorldUnavailable(`no world agent answers at ${this.socketPath}`, "start it (`substrate world warm`), or unset SUBSTRATE_WORLD_SOCKET / world.socket");
      const { startRootlessForCli } = await import("../lifecycle/rootless.ts");
      const r = await startRootlessForCli(this.env);
      return { client: new AgentClient(r.socketPath), backend: this.name, socketPath: r.socketPath, note: r.note };
    }
    const started = await startManualAgent(this.socketPath, this.env);
    return {
      client,
      backend: this.name,
      socketPath: this.socketPath,
      note: `started world agent ${versionString()} on ${this.socketPath} (pid ${started.pid})`,
    };
  }
}
