/**
 * Where the Linux host's background agents live (manual and rootless mode): the system run
 * dir, pid files, the log, the versioned install dir of the embedded agent. Imported by the
 * lifecycle modes and by the linux-local backend; imports nothing of either.
 */
import { join } from "node:path";
import { substrateHomeOf } from "../settings.ts";
import { versionString } from "../version.ts";

export const RUN_DIR = "/run/substrate";
export const PID_FILE = join(RUN_DIR, "agent.pid");
export const LOG_FILE = join(RUN_DIR, "agent.log");

export const isRoot = (): boolean => process.getuid?.() === 0;

/** Where the embedded agent is written: versioned, so upgrades never overwrite a running one. */
export function agentInstallDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = isRoot() ? "/var/lib/substrate/bin" : join(substrateHomeOf(env), "bin");
  return join(base, versionString());
}

/** The default socket's agent keeps /run/substrate/agent.pid; any other socket `<socket>.pid`. */
export const pidFileFor = (socketPath: string): string => (socketPath === "/run/substrate.sock" ? PID_FILE : `${socketPath}.pid`);
