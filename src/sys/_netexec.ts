/**
 * Private runner shared by the network wrappers (`ip.ts`, `nft.ts`): runs a
 * program, optionally inside the network namespace of a host PID, and returns its output.
 *
 * Why `nsenter --net=/proc/PID/ns/net` and not `ip netns exec`: worlds are unnamed
 * namespaces identified by their PID-1's host PID; naming them would mean bind-mounting
 * /run/netns/<name> files that outlive a crashed agent. nsenter joins only the network
 * namespace, so the program still sees the host's filesystem (its binary, our config files).
 */

export interface NetExecOptions {
  /** Run inside the network namespace of this host PID (`/proc/PID/ns/net`). */
  netnsPid?: number;
  /**
   * Also join that PID's user namespace (`--user … --preserve-credentials`): how an
   * unprivileged (rootless) agent, the owner of the world's user namespace, gets to be root
   * for the world's netns.
   */
  userns?: boolean;
  /** Written to the program's stdin, then closed (`nft -f -`, `ip -batch -`). */
  stdin?: string;
  /** Kill the program after this long; default 15 s (a hung netlink call must not hang a world). */
  timeoutMs?: number;
}

export interface NetExecResult {
  argv: string[];
  code: number;
  stdout: string;
  stderr: string;
}

const SYS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** The argv that runs `argv` inside the network namespace of `pid` (or as is). */
export function inNetns(argv: string[], netnsPid?: number, userns = false): string[] {
  if (netnsPid === undefined) return argv;
  const user = userns ? [`--user=/proc/${netnsPid}/ns/user`, "--preserve-credentials"] : [];
  return ["nsenter", ...user, `--net=/proc/${netnsPid}/ns/net`, "--", ...argv];
}

/** Runs the program; never throws on a non-zero exit (callers wrap that in their typed error). */
export async function netExec(argv: string[], opts: NetExecOptions = {}): Promise<NetExecResult> {
  const full = inNetns(argv, opts.netnsPid, opts.userns);
  const proc = Bun.spawn(full, {
    // ip/nft live in sbin: never depend on the PATH the agent was started with (an agent the CLI
    // started inherits the caller's, e.g. a replay's recorded PATH without /usr/sbin).
    env: { ...process.env, PATH: SYS_PATH },
    stdin: opts.stdin === undefined ? "ignore" : new TextEncoder().encode(opts.stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 15_000);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { argv: full, code: proc.signalCode === null ? code : 128 + 9, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

/** Base of the typed errors: the command line and stderr, so a user can rerun it by hand. */
export class NetCommandError extends Error {
  constructor(
    readonly argv: string[],
    readonly code: number,
    readonly stderr: string,
    what: string,
  ) {
    super(`${what} failed (exit ${code}): ${stderr.trim() || "(no stderr)"} [${argv.join(" ")}]`);
    this.name = "NetCommandError";
  }
}

/** True when a program is missing (ENOENT from spawn, or nsenter's "failed to execute"). */
export function isMissingProgram(e: unknown): boolean {
  const msg = e instanceof Error ? e.message : String(e);
  return /ENOENT|No such file or directory|failed to execute/.test(msg);
}
