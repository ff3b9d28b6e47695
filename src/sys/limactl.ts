/**
 * Typed wrapper for `limactl` (Lima). Every call returns a typed result or throws a
 * LimactlError carrying the command line and stderr.
 *
 * Lima 2.x behaviours the callers rely on (lima-vm/lima, v2.2.0; the test harness' emulator
 * reproduces them, docs/dev/lima_guest_harness.md names the source file of each):
 * - `list NAME --json` prints ONE JSON OBJECT PER LINE (not an array); an unknown name is
 *   `No instance matching NAME found.` on stderr and exit 1 (cmd/limactl/list.go) → null here.
 * - `start --tty=false --name N FILE` creates; creating twice fails with "already exists".
 * - `stop` of a stopped instance and `delete` of a running one fail unless `-f`.
 * - `shell` runs `cd <host cwd> || cd <host home> ; exec /bin/bash -l -c '<args>'` over SSH as
 *   the default user (cmd/limactl/shell.go), multiplexed on the hostagent's ControlMaster, so
 *   a group added later is not in the session until `shell --reconnect` (Lima >= 1.1).
 * - `shell` and `copy` hand their stdio to an ssh/scp/rsync child and install no SIGTERM
 *   handler: killing limactl alone leaves the child holding our pipes. So every call runs in
 *   its own process group, the group is killed at the deadline, and we stop waiting for EOF.
 * - `copy` runs as the default user (rsync -a when the guest has it, Lima >= 2.0; else scp):
 *   root-owned guest paths are not writable; relative guest paths are under the user's home.
 */
import { dirname, join } from "node:path";
import { statSync } from "node:fs";
import { LimaInstance } from "../contract/index.ts";

export class LimactlError extends Error {
  override name = "LimactlError";
  constructor(
    readonly argv: string[],
    readonly exitCode: number | null,
    readonly stderr: string,
    readonly reason?: string,
  ) {
    super(`${argv.join(" ")} failed${exitCode === null ? "" : ` (exit ${exitCode})`}: ${reason ?? (lastLines(stderr) || "no output")}`);
  }
}

/** limactl is not installed (not on PATH nor in the usual install locations). */
export class LimactlMissing extends Error {
  override name = "LimactlMissing";
  constructor() {
    super(`limactl (Lima) is not installed (looked in PATH, ${LIMACTL_DIRS.join(", ")})`);
  }
}

/**
 * The oldest Lima the product works with: `copy` with the rsync backend and `-l` login shells
 * (2.0); `shell --reconnect` needs 1.1 (docs/dev/mac_world_setup.md, "Lima versions").
 */
export const MIN_LIMA_VERSION = "2.0.0";
/** virtiofs silently skipped mount paths with a space before Lima 2.2 (lima-vm/lima#5136). */
export const LIMA_SPACES_VERSION = "2.2.0";

/** Where Lima lives when PATH lacks it: Homebrew on Apple silicon, Homebrew on Intel, MacPorts. */
export const LIMACTL_DIRS = ["/opt/homebrew/bin", "/usr/local/bin", "/opt/local/bin"];

export interface LimactlLocation {
  path: string;
  /** How it was found: "PATH", "beside substrate" (process.execPath's dir) or the directory. */
  via: string;
}

/**
 * limactl: PATH, then beside the substrate binary (a Homebrew-installed substrate sits next to
 * limactl), then /opt/homebrew/bin (not in macOS's default PATH), /usr/local/bin, /opt/local/bin.
 */
export function findLimactl(env: NodeJS.ProcessEnv = process.env, execPath: string = process.execPath, isExec: (p: string) => boolean = isExecutable): LimactlLocation | null {
  const onPath = Bun.which("limactl", { PATH: env.PATH ?? "" });
  if (onPath) return { path: onPath, via: "PATH" };
  const candidates: [string, string][] = [[dirname(execPath), "beside substrate"], ...LIMACTL_DIRS.map((d): [string, string] => [d, d])];
  for (const [dir, via] of candidates) {
    const p = join(dir, "limactl");
    if (isExec(p)) return { path: p, via };
  }
  return null;
}
function isExecutable(p: string): boolean {
  try {
    const st = statSync(p);
    return st.isFile() && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** "2.1.0" >= "2.0.0" (numeric X.Y.Z; a pre-release suffix counts as that release). */
export function versionAtLeast(v: string, min: string): boolean {
  const p = (x: string) => x.replace(/^v/, "").split(/[-+]/)[0]!.split(".").map((n) => Number(n) || 0);
  const [a, b] = [p(v), p(min)];
  for (let i = 0; i < 3; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  return true;
}

/** Reads a stream to the end, or until `stop` resolves (then cancels it): a grandchild may keep it open. */
async function drain(s: ReadableStream<Uint8Array>, stop: Promise<void>, onChunk?: (text: string) => void): Promise<string> {
  const reader = s.getReader();
  const dec = new TextDecoder();
  let out = "";
  let stopped = false;
  void stop.then(() => {
    stopped = true;
    reader.cancel().catch(() => {});
  });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || stopped) break;
      const t = dec.decode(value, { stream: true });
      out += t;
      onChunk?.(t);
    }
  } catch {}
  return out + dec.decode();
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

const lastLines = (s: string, n = 4) =>
  s
    .trim()
    .split("\n")
    .filter((l) => l.trim())
    .slice(-n)
    .join(" | ");

export interface LimactlOptions {
  /** Executable (default: found by findLimactl). */
  bin?: string;
  env?: NodeJS.ProcessEnv;
}

export interface RunOptions {
  stdin?: Uint8Array | string;
  timeoutMs?: number;
  /** Called with each piece of stderr as it arrives (progress of a long `start`). */
  onStderr?: (text: string) => void;
  /** Lets the caller end the call early (e.g. a stalled download): kills the group like a timeout. */
  abort?: AbortSignal;
}

export class Limactl {
  private readonly explicitBin: string | undefined;
  private readonly env: NodeJS.ProcessEnv;
  private located: LimactlLocation | null | undefined;
  constructor(o: LimactlOptions = {}) {
    this.explicitBin = o.bin;
    this.env = o.env ?? process.env;
  }

  /** Where limactl is (and how it was found), or null. */
  locate(): LimactlLocation | null {
    if (this.explicitBin) return { path: this.explicitBin, via: "configured" };
    if (this.located === undefined) this.located = findLimactl(this.env);
    return this.located;
  }
  get bin(): string {
    return this.locate()?.path ?? "limactl";
  }

  /** Path of limactl, or null. */
  which(): string | null {
    return this.locate()?.path ?? null;
  }

  /**
   * Runs limactl with args; never throws for a non-zero exit (see `check`). limactl runs in
   * its own process group; at the deadline the whole group gets SIGTERM, then SIGKILL, and the
   * pipes are given up even if a grandchild still holds them.
   */
  async run(args: string[], o: RunOptions = {}): Promise<RunResult> {
    const argv = [this.bin, ...args];
    const dir = dirname(this.bin);
    // limactl runs ssh, scp, rsync (and qemu-img) by name: its own directory joins PATH.
    const env = { ...this.env, PATH: this.bin.includes("/") ? `${this.env.PATH ? `${this.env.PATH}:` : ""}${dir}` : (this.env.PATH ?? "") };
    let proc: ReturnType<typeof Bun.spawn>;
    try {
      proc = Bun.spawn(argv, {
        env,
        stdin: o.stdin === undefined ? "ignore" : typeof o.stdin === "string" ? new TextEncoder().encode(o.stdin) : o.stdin,
        stdout: "pipe",
        stderr: "pipe",
        detached: true,
      });
    } catch (e) {
      if ((e as { code?: string }).code === "ENOENT") throw new LimactlMissing();
      throw e;
    }
    let timedOut: string | null = null;
    let release!: () => void;
    const stopReading = new Promise<void>((r) => (release = r));
    const killGroup = (sig: NodeJS.Signals) => {
      try {
        process.kill(-proc.pid, sig);
      } catch {}
    };
    const end = (why: string) => {
      if (timedOut) return;
      timedOut = why;
      killGroup("SIGTERM");
      setTimeout(() => killGroup("SIGKILL"), 2000).unref?.();
      // Whoever still holds the pipes (a child in another group), we stop waiting for it.
      setTimeout(release, 3000).unref?.();
    };
    const timer = o.timeoutMs ? setTimeout(() => end(`timed out after ${o.timeoutMs} ms`), o.timeoutMs) : null;
    const onAbort = () => end(String(o.abort?.reason ?? "aborted"));
    o.abort?.addEventListener("abort", onAbort);
    if (o.abort?.aborted) onAbort();
    const outP = drain(proc.stdout as ReadableStream<Uint8Array>, stopReading);
    const errP = drain(proc.stderr as ReadableStream<Uint8Array>, stopReading, o.onStderr);
    const code = await proc.exited;
    // limactl has exited: its stdio may live on in a child that outlived it; give that a moment.
    const grace = setTimeout(release, timedOut ? 500 : 5000);
    const [stdout, stderr] = await Promise.all([outP, errP]);
    clearTimeout(grace);
    if (timer) clearTimeout(timer);
    o.abort?.removeEventListener("abort", onAbort);
    if (timedOut) {
      killGroup("SIGKILL");
      throw new LimactlError(argv, null, stderr, timedOut);
    }
    return { code, stdout, stderr };
  }

  /** Runs and throws LimactlError on a non-zero exit. */
  async check(args: string[], o: RunOptions = {}): Promise<RunResult> {
    const r = await this.run(args, o);
    if (r.code !== 0) throw new LimactlError([this.bin, ...args], r.code, r.stderr);
    return r;
  }

  /** `limactl --version` → "1.0.3" (null when unparsable). */
  async version(): Promise<string | null> {
    const r = await this.run(["--version"], { timeoutMs: 15_000 });
    return /version\s+v?(\d+\.\d+\.\d+[^\s]*)/.exec(r.stdout)?.[1] ?? null;
  }

  /** The instance, or null when it does not exist. */
  async list(name: string): Promise<LimaInstance | null> {
    const r = await this.run(["list", name, "--json"], { timeoutMs: 30_000 });
    if (r.code !== 0) {
      if (/no instance matching|not found|unmatched/i.test(r.stderr)) return null;
      throw new LimactlError([this.bin, "list", name, "--json"], r.code, r.stderr);
    }
    for (const line of r.stdout.split("\n")) {
      if (!line.trim()) continue;
      let raw: unknown;
      try {
        raw = JSON.parse(line);
      } catch {
        throw new LimactlError([this.bin, "list", name, "--json"], 0, r.stderr, `unexpected output: ${line.slice(0, 200)}`);
      }
      const p = LimaInstance.safeParse(raw);
      if (p.success && p.data.name === name) return p.data;
    }
    return null;
  }

  /**
   * Create and start from a profile file. Lima downloads the image first (Prepare), then waits
   * up to `--timeout` for READY; the caller bounds the two phases separately via `o`.
   */
  async create(name: string, profileFile: string, o: RunOptions & { bootTimeoutS?: number } = {}): Promise<void> {
    await this.check(["start", "--tty=false", `--timeout=${o.bootTimeoutS ?? 600}s`, "--name", name, profileFile], o);
  }

  async start(name: string, timeoutMs = 660_000): Promise<void> {
    await this.check(["start", "--tty=false", `--timeout=${Math.floor(timeoutMs / 1000) - 60}s`, name], { timeoutMs });
  }

  async stop(name: string, o: { force?: boolean } = {}): Promise<void> {
    await this.check(["stop", ...(o.force ? ["-f"] : []), name], { timeoutMs: 300_000 });
  }

  async delete(name: string, o: { force?: boolean } = {}): Promise<void> {
    await this.check(["delete", ...(o.force ? ["-f"] : []), name], { timeoutMs: 300_000 });
  }

  /** `limactl shell NAME -- args…` (args are quoted by Lima, one word each). */
  async shell(name: string, args: string[], o: { stdin?: Uint8Array | string; timeoutMs?: number; workdir?: string } = {}): Promise<RunResult> {
    const flags = o.workdir ? ["--workdir", o.workdir] : [];
    return this.run(["shell", ...flags, name, ...args], { stdin: o.stdin, timeoutMs: o.timeoutMs ?? 120_000 });
  }

  /** Drops Lima's SSH master so the next shell sees new group memberships. */
  async reconnect(name: string): Promise<void> {
    await this.check(["shell", "--reconnect", name, "true"], { timeoutMs: 60_000 });
  }

  /** `limactl copy [-r] SRC… NAME:DST` (as the default user). */
  async copyIn(name: string, sources: string[], guestDest: string, o: { recursive?: boolean } = {}): Promise<void> {
    await this.check(["copy", ...(o.recursive ? ["-r"] : []), ...sources, `${name}:${guestDest}`], { timeoutMs: 600_000 });
  }

  /** `limactl copy [-r] NAME:SRC DST`. */
  async copyOut(name: string, guestSrc: string, hostDest: string, o: { recursive?: boolean } = {}): Promise<void> {
    await this.check(["copy", ...(o.recursive ? ["-r"] : []), `${name}:${guestSrc}`, hostDest], { timeoutMs: 600_000 });
  }
}
