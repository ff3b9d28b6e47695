/**
 * `unshare` (util-linux): run a short shell script in a throw-away private mount namespace.
 * Used by the fs-strategy probe and the overlay tests, never for worlds (the spawner owns those).
 *
 * Flags and why:
 * - `--mount --propagation private`: mounts made by the script are invisible to the caller and
 *   vanish with the namespace, even if the script dies half-way.
 * - `--pid --fork --kill-child`: the script's children (a fuse-overlayfs daemon in particular)
 *   live in a new PID namespace whose init is the forked child; when it exits, the kernel kills
 *   them. A surviving fuse daemon would pin the mount namespace forever.
 * Script arguments arrive as positional parameters ($1...), never interpolated into the script.
 */
export interface NsRunResult {
  argv: string[];
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

export class UnshareError extends Error {
  constructor(
    readonly argv: string[],
    readonly stderr: string,
    message: string,
  ) {
    super(message);
    this.name = "UnshareError";
  }
}

export const unshareAvailable = (): boolean => Bun.which("unshare") !== null;

/** `extra`: more unshare flags first (e.g. userns.ts `IdMapHelpers.unshareArgs`). */
export function privateMountNsArgv(argv: string[], extra: string[] = []): string[] {
  return ["unshare", ...extra, "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--", ...argv];
}

/** Runs `argv` in a private mount + PID namespace; resolves with its exit status (never throws on exit != 0). */
export async function runInPrivateMountNs(
  argv: string[],
  opts: { timeoutMs?: number; env?: Record<string, string>; unshareArgs?: string[] } = {},
): Promise<NsRunResult> {
  if (!unshareAvailable()) {
    throw new UnshareError([], "", "unshare (util-linux) not found on PATH: run scripts/setup.sh (apt-get install util-linux)");
  }
  const full = privateMountNsArgv(argv, opts.unshareArgs);
  const proc = Bun.spawn(full, {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: opts.env ?? (process.env as Record<string, string>),
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 30_000);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    const signal = proc.signalCode === null ? null : String(proc.signalCode);
    return { argv: full, code: signal === null ? code : null, signal, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

/** `sh -c script` in a private mount namespace, with `args` as $1.. */
export function runShInPrivateMountNs(
  script: string,
  args: string[],
  opts: { timeoutMs?: number } = {},
): Promise<NsRunResult> {
  return runInPrivateMountNs(["/bin/sh", "-c", script, "substrate-ns", ...args], opts);
}
