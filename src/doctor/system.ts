/**
 * Everything the host doctor may touch, behind one injectable interface, so the macOS and
 * Windows variants run on Linux in tests (inject `platform` + `run`) and the real variant
 * stays side-effect free by construction: reads, `which`, read-only commands and one
 * connect-and-GET probe — no writes, no mkdir, no background processes.
 */
import { existsSync, lstatSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import type { DoctorPlatform } from "../contract/index.ts";
import { rebuildInProgress } from "../lima/state.ts";

export interface CommandResult {
  /** Exit code; null when the process could not start or was killed. */
  code: number | null;
  stdout: string;
  stderr: string;
  /** Spawn failure (e.g. ENOENT) or timeout, as text. */
  error: string | null;
}
export type CommandRunner = (argv: string[], opts?: { timeoutMs?: number }) => Promise<CommandResult>;

export interface HttpProbeResult {
  ok: boolean;
  status: number | null;
  body: string;
  error: string | null;
}

export interface HostSystem {
  platform: DoctorPlatform;
  env: Record<string, string | undefined>;
  euid: number;
  home: string;
  readText(path: string): string | null;
  exists(path: string): boolean;
  isSocket(path: string): boolean;
  which(cmd: string): string | null;
  run: CommandRunner;
  /** GET `http://localhost{route}` over a Unix socket. */
  httpGetUnix(socketPath: string, route: string, timeoutMs: number): Promise<HttpProbeResult>;
  /** macOS: a `substrate world warm` rebuild running right now (src/lima/state.ts), or null. */
  limaRebuild(): { phase: string; pid: number } | null;
}

export const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * Runs a read-only command and waits for it; on timeout SIGKILLs its whole process group and
 * stops waiting for its pipes, so no child can hold the doctor: `limactl shell` hands its
 * stdout/stderr to an ssh child and forwards no signal (cmd/limactl/shell.go), so killing
 * limactl alone would leave ssh holding the pipes open.
 */
export const spawnRunner: CommandRunner = async (argv, opts = {}) => {
  let proc: ReturnType<typeof Bun.spawn>;
  try {
    proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe", detached: true });
  } catch (e) {
    return { code: null, stdout: "", stderr: "", error: (e as Error).message };
  }
  let timedOut = false;
  let giveUp!: () => void;
  const gaveUp = new Promise<void>((r) => (giveUp = r));
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      process.kill(-proc.pid, "SIGKILL");
    } catch {}
    setTimeout(giveUp, 1000).unref?.();
  }, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const read = (s: ReadableStream) => Promise.race([new Response(s).text(), gaveUp.then(() => "")]);
  const [stdout, stderr, code] = await Promise.all([read(proc.stdout as ReadableStream), read(proc.stderr as ReadableStream), proc.exited]);
  clearTimeout(timer);
  if (timedOut) return { code: null, stdout, stderr, error: `timed out after ${opts.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms` };
  return { code, stdout, stderr, error: null };
};

const SOCKET_ERRORS: Record<string, string> = {
  ENOENT: "no such socket",
  ECONNREFUSED: "connection refused (stale socket, nobody listening)",
  EACCES: "permission denied",
  ConnectionRefused: "connection refused (stale socket, nobody listening)",
  TimeoutError: "timed out",
};

export async function httpGetUnix(socketPath: string, route: string, timeoutMs: number): Promise<HttpProbeResult> {
  try {
    // Bun's fetch speaks HTTP over a Unix socket with `unix`; the host part is ignored.
    const res = await fetch(`http://localhost${route}`, {
      unix: socketPath,
      signal: AbortSignal.timeout(timeoutMs),
    } as RequestInit);
    const body = await res.text();
    return { ok: res.ok, status: res.status, body, error: res.ok ? null : `HTTP ${res.status}` };
  } catch (e) {
    const err = e as Error & { code?: string };
    // Bun's messages for socket errors talk about URLs; say what happened to the socket instead.
    const why = err.code ? (SOCKET_ERRORS[err.code] ?? err.message) : err.message;
    return { ok: false, status: null, body: "", error: err.code ? `${err.code}: ${why}` : why };
  }
}

function platformOf(p: NodeJS.Platform): DoctorPlatform {
  if (p === "darwin") return "macos";
  if (p === "win32") return "windows";
  return "linux";
}

/**
 * Test hook: `SUBSTRATE_DOCTOR_PLATFORM=macos|linux|windows` makes the doctor take that
 * platform's probe path on any OS (used to run the macOS variant for real against the limactl
 * emulator on Linux). Not a user setting; nothing else reads it.
 */
function platformOverride(env: HostSystem["env"]): DoctorPlatform | undefined {
  const p = env.SUBSTRATE_DOCTOR_PLATFORM;
  return p === "linux" || p === "macos" || p === "windows" ? p : undefined;
}

/** The real machine. `overrides` lets tests swap single members (e.g. platform + run). */
export function realSystem(overrides: Partial<HostSystem> = {}): HostSystem {
  const env = overrides.env ?? process.env;
  return {
    platform: platformOverride(env) ?? platformOf(process.platform),
    env,
    euid: process.geteuid?.() ?? 0,
    home: env.HOME ?? homedir(),
    readText: (p) => {
      try {
        return readFileSync(p, "utf8");
      } catch {
        return null;
      }
    },
    exists: (p) => existsSync(p),
    isSocket: (p) => {
      try {
        return lstatSync(p).isSocket();
      } catch {
        return false;
      }
    },
    // sbin dirs too: non-root Debian users lack them in PATH, yet nft lives in /usr/sbin.
    which: (cmd) => Bun.which(cmd, { PATH: `${env.PATH ?? ""}:/usr/local/sbin:/usr/sbin:/sbin` }),
    run: spawnRunner,
    httpGetUnix,
    limaRebuild: () => rebuildInProgress(env as NodeJS.ProcessEnv),
    ...overrides,
  };
}
