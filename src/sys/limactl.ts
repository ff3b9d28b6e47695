/**
 * Typed wrapper for `limactl` (Lima). Every call returns a typed result or throws a
 * LimactlError carrying the command line and stderr.
 *
 * Lima behaviours the callers rely on (the test harness' emulator reproduces them):
 * - `list NAME --json` prints ONE JSON OBJECT PER LINE (not an array); an unknown name is a
 *   warning on stderr and exit 1 (older Lima) or empty output (newer): both → null here.
 * - `start --tty=false --name N FILE` creates; creating twice fails with "already exists".
 * - `stop` of a stopped instance and `delete` of a running one fail unless `-f`.
 * - `shell` runs `cd …; exec "$SHELL" --login -c '<args>'` over SSH as the default user,
 *   through a persistent SSH master: group changes need `shell --reconnect`.
 * - `copy` runs as the default user: root-owned guest paths are not writable; relative
 *   guest paths are under the user's home.
 */
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

/** limactl is not installed (or not on PATH). */
export class LimactlMissing extends Error {
  override name = "LimactlMissing";
  constructor() {
    super("limactl (Lima) is not installed or not on PATH");
  }
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
  /** Executable (default: `limactl` from PATH). */
  bin?: string;
  env?: NodeJS.ProcessEnv;
}

export class Limactl {
  readonly bin: string;
  private readonly env: NodeJS.ProcessEnv;
  constructor(o: LimactlOptions = {}) {
    this.bin = o.bin ?? "limactl";
    this.env = o.env ?? process.env;
  }

  /** Path of limactl on PATH, or null. */
  which(): string | null {
    return Bun.which(this.bin, { PATH: this.env.PATH ?? "" });
  }

  /** Runs limactl with args; never throws for a non-zero exit (see `check`). */
  async run(args: string[], o: { stdin?: Uint8Array | string; timeoutMs?: number } = {}): Promise<RunResult> {
    const argv = [this.bin, ...args];
    let proc;
    try {
      proc = Bun.spawn(argv, {
        env: this.env,
        stdin: o.stdin === undefined ? "ignore" : typeof o.stdin === "string" ? new TextEncoder().encode(o.stdin) : o.stdin,
        stdout: "pipe",
        stderr: "pipe",
        timeout: o.timeoutMs,
        killSignal: "SIGTERM",
      });
    } catch (e) {
      if ((e as { code?: string }).code === "ENOENT") throw new LimactlMissing();
      throw e;
    }
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (proc.signalCode && o.timeoutMs) throw new LimactlError(argv, null, stderr, `timed out after ${o.timeoutMs} ms`);
    return { code, stdout, stderr };
  }

  /** Runs and throws LimactlError on a non-zero exit. */
  async check(args: string[], o: { stdin?: Uint8Array | string; timeoutMs?: number } = {}): Promise<RunResult> {
    const r = await this.run(args, o);
    if (r.code !== 0) throw new LimactlError([this.bin, ...args], r.code, r.stderr);
    return r;
  }

  /** `limactl --version` → "1.0.3" (null when unparsable). */
  async version(): Promise<string | null> {
    const r = await this.run(["--version"], { timeoutMs: 10_000 });
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

  /** Create and start from a profile file (Lima downloads the image on first use). */
  async create(name: string, profileFile: string, timeoutMs = 900_000): Promise<void> {
    await this.check(["start", "--tty=false", "--name", name, profileFile], { timeoutMs });
  }

  async start(name: string, timeoutMs = 600_000): Promise<void> {
    await this.check(["start", "--tty=false", name], { timeoutMs });
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
