/**
 * The background agent of manual and rootless mode as a process: its pid file, proof that
 * a pid really is OUR agent for a given socket, starting it detached, stopping exactly it.
 *
 * Why the /proc/PID/cmdline check: a pid file outlives its process after a crash or reboot
 * (/run is tmpfs, but ~/.substrate/run is not), and the kernel reuses pids. Killing "the pid
 * in the file" blindly can hit an unrelated process. We only signal a pid whose command line
 * is an agent (`substrate-world-agent` binary or `agent/main.ts` from source) listening on
 * exactly this socket (`--listen SOCKET`, which both start paths always pass).
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from "node:fs";
import { basename, dirname } from "node:path";
import { AgentClient, AgentUnreachable } from "../api/client.ts";

export function readPidFile(path: string): number | null {
  try {
    const n = Number(readFileSync(path, "utf8").trim());
    return Number.isInteger(n) && n > 1 ? n : null;
  } catch {
    return null;
  }
}

export function procCmdline(pid: number): string[] | null {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return raw.length ? raw.replace(/\0$/, "").split("\0") : null;
  } catch {
    return null;
  }
}

/** Alive and not a zombie (a reaped-later child still has a /proc entry). */
export function procAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

const isAgentExe = (arg: string): boolean => basename(arg).startsWith("substrate-world-agent") || arg.endsWith("agent/main.ts");

/** Is `pid` a world agent serving `socketPath` (by its command line)? */
export function isAgentFor(pid: number, socketPath: string): boolean {
  const argv = procCmdline(pid);
  if (!argv || !argv.slice(0, 3).some(isAgentExe)) return false;
  for (let i = 0; i < argv.length - 1; i++) if (argv[i] === "--listen" && argv[i + 1] === socketPath) return true;
  return argv.includes(`--listen=${socketPath}`);
}

/** The pid of our agent for this socket, from its pid file, verified; null otherwise. */
export function agentPid(pidFile: string, socketPath: string): number | null {
  const pid = readPidFile(pidFile);
  return pid !== null && procAlive(pid) && isAgentFor(pid, socketPath) ? pid : null;
}

export type StopOutcome = "stopped" | "killed" | "not_running";

/**
 * SIGTERM the verified agent (it tears its worlds down and removes its pid file), wait,
 * SIGKILL only if it ignores us. Re-verifies the pid right before each signal.
 */
export async function stopAgent(pidFile: string, socketPath: string, timeoutMs = 15_000): Promise<{ outcome: StopOutcome; pid: number | null; stalePidFile: boolean }> {
  const filePid = readPidFile(pidFile);
  const pid = agentPid(pidFile, socketPath);
  if (pid === null) {
    const stale = filePid !== null;
    if (stale) rmSync(pidFile, { force: true });
    return { outcome: "not_running", pid: null, stalePidFile: stale };
  }
  process.kill(pid, "SIGTERM");
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!procAlive(pid)) break;
    await Bun.sleep(25);
  }
  let outcome: StopOutcome = "stopped";
  if (procAlive(pid) && isAgentFor(pid, socketPath)) {
    process.kill(pid, "SIGKILL");
    outcome = "killed";
    while (procAlive(pid)) await Bun.sleep(25);
  }
  rmSync(pidFile, { force: true });
  return { outcome, pid, stalePidFile: false };
}

export interface DetachedAgentOptions {
  argv: string[];
  socketPath: string;
  pidFile: string;
  logFile: string;
  stateDir?: string;
  env: NodeJS.ProcessEnv;
  /** How long to wait for /v1/capabilities. */
  timeoutMs?: number;
  /** mode of created dirs (default 0700; the system run dir is 0755) */
  dirMode?: number;
  /** mode of a created log (default 0600; the system log is 0640) */
  logMode?: number;
}

export class AgentStartError extends Error {
  override name = "AgentStartError";
  constructor(
    message: string,
    readonly logFile: string,
  ) {
    super(message);
  }
}

/**
 * Start an agent detached from us (own session, output to its log), wait until it answers.
 * The one start of a background agent: manual mode (root paths, startManualAgent below) and
 * rootless mode (the user's paths) both come here.
 */
export async function startDetachedAgent(o: DetachedAgentOptions): Promise<number> {
  for (const f of [o.pidFile, o.logFile, o.socketPath]) mkdirSync(dirname(f), { recursive: true, mode: o.dirMode ?? 0o700 });
  const logFd = openSync(o.logFile, "a", o.logMode ?? 0o600);
  const proc = Bun.spawn(
    [...o.argv, "--listen", o.socketPath, "--pid-file", o.pidFile, ...(o.stateDir ? ["--state-dir", o.stateDir] : [])],
    {
      stdin: "ignore",
      stdout: logFd,
      stderr: logFd,
      detached: true,
      // Never let a socket-activation environment of ours leak into a bind-mode agent.
      env: { ...o.env, LISTEN_FDS: "", LISTEN_PID: "", BUN_GC_TIMER_DISABLE: "1" },
    },
  );
  closeSync(logFd);
  proc.unref();
  let exited = false;
  void proc.exited.then(() => (exited = true));
  const client = new AgentClient(o.socketPath);
  const deadline = Date.now() + (o.timeoutMs ?? 15_000);
  while (Date.now() < deadline && !exited) {
    try {
      await client.capabilities(1000);
      return proc.pid;
    } catch (e) {
      if (!(e instanceof AgentUnreachable)) throw e;
    }
    await Bun.sleep(25);
  }
  if (!exited) proc.kill("SIGTERM");
  const tail = existsSync(o.logFile) ? readFileSync(o.logFile, "utf8").trim().split("\n").slice(-3).join(" | ") : "";
  throw new AgentStartError(`the world agent did not start on ${o.socketPath}${tail ? `: ${tail}` : ""}`, o.logFile);
}

/** Manual mode (root): the embedded agent on `socketPath` with the system paths; returns its pid. */
export async function startManualAgent(socketPath: string, env: NodeJS.ProcessEnv = process.env): Promise<{ pid: number; socketPath: string }> {
  const [{ agentCommand }, { agentInstallDir, LOG_FILE, pidFileFor }] = await Promise.all([import("../embedded.ts"), import("./paths.ts")]);
  const argv = await agentCommand(agentInstallDir(env), env);
  const pid = await startDetachedAgent({ argv, socketPath, pidFile: pidFileFor(socketPath), logFile: LOG_FILE, env, dirMode: 0o755, logMode: 0o640 });
  return { pid, socketPath };
}
