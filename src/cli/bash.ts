/**
 * Issue 16: the bash-compatible entry. The same binary, invoked as `bash` (the shim
 * ~/.substrate/shims/bash, a symlink whose argv[0] is `bash`; also `sh`, `zsh`) or as
 * `substrate` with bash's own forms (`-c CMD [ARG0 [ARG…]]`, `-lc`, `-c -l`, `-i -c`, `-s`,
 * `SCRIPT [ARGS]`, `--login`, `-o OPT`, …).
 *
 * The script is never rewritten: the policy decides on the very argv that runs — `bash`
 * followed by the caller's own arguments — and a real bash in the world runs it with the
 * caller's cwd and env, stdin (pipe, /dev/null, file: pipes; a terminal: a PTY in the world
 * with the window size), stdout and stderr apart and unbuffered, and the exact exit status
 * (128+N for signals). Everything goes through the host pipeline (./_entry-run.ts).
 *
 * Inside a world the entry execs the real shell at once: agents set SHELL to the shim and
 * make / npm / git hooks re-enter it. "Inside" is the world's own marker, which a host
 * process cannot fake: SUBSTRATE_WORLD_ID names the world and PID 1 of this PID namespace is
 * that world's init (`/proc/1/cmdline` carries `"id":"<id>"` in its JSON argument, see
 * agent/world/session.ts). An env var alone is not enough — any
 * host process could set it to run unconfined.
 *
 * Likewise for a command Substrate runs on the host (its host fallback): SUBSTRATE_WORLD=disabled
 * plus the span env it sets. There the outer command was decided already; its nested shells
 * are the real shell, exactly as a nested shell inside a world is.
 *
 * Keep this file's static imports to node builtins and bash-args.ts: `bash --version` and the
 * in-world exec must not load zod, the broker or the client.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { BASH_USAGE, BashUsageError, parseBashArgs, type BashInvocation } from "./bash-args.ts";

// (HOTPATH, issue 17) in a module of their own so that main.ts asks without loading this file
import { SHELL_NAMES } from "./shell-name.ts";
export { SHELL_NAMES, shellNameOf } from "./shell-name.ts";

/** Are we inside a Substrate world? (see the header: the env names it, PID 1 proves it) */
export function inWorld(env: NodeJS.ProcessEnv = process.env): boolean {
  const id = env.SUBSTRATE_WORLD_ID;
  // the id's own shape (a substring such as "/" or "bin" would match any host's init)
  if (!id || env.SUBSTRATE_WORLD !== "enabled" || !/^wld_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id)) return false;
  try {
    return readFileSync("/proc/1/cmdline", "utf8").includes(`"id":"${id}"`);
  } catch {
    return false;
  }
}

/** Replace this process with the real shell (same argv[0], args, env, fds). */
function execShell(path: string, argv0: string, args: string[]): never {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  (process as unknown as { execve(file: string, args: string[], env: Record<string, string>): void }).execve(path, [argv0, ...args], env);
  throw new Error("execve returned");
}

/**
 * argv[0] for the world: the shell's name, found on the caller's PATH there as bash found on
 * PATH would be (so `$0` is `bash`) — unless no PATH dir but the shim's own has it, then the
 * real shell's absolute path (a caller with a bare PATH still gets a shell).
 */
export function worldArgv0(name: string, realShell: string, path: string | undefined, argv0: string): string {
  const own = argv0.includes("/") ? dirname(resolve(argv0)) : null;
  const dirs = (path ?? "").split(":").filter((d) => d && resolve(d) !== own);
  return dirs.some((d) => existsSync(join(d, name))) ? name : realShell;
}

export interface BashEntryOptions {
  /** the shell name (`bash`, `sh`, `zsh`); `substrate -c …` is `bash` */
  shell: string;
  /** argv[0] as the caller gave it (the in-world exec keeps it) */
  argv0: string;
  /** `--world` / `--no-world` given to `substrate` before the bash forms */
  worldFlag?: boolean;
  /** invoked as `substrate …` (usage errors in substrate's style), not as the shell */
  asSubstrate?: boolean;
}

/** Run one bash invocation (args = everything after argv[0]); resolves with the exit code. */
export async function bashEntry(args: string[], o: BashEntryOptions): Promise<number> {
  const realShell = SHELL_NAMES[o.shell] ?? "/bin/bash";
  if (inWorld()) execShell(realShell, o.argv0, args);
  // A command Substrate itself runs on the host (world disabled or unavailable: the pipeline's
  // host fallback sets SUBSTRATE_WORLD=disabled and the span env): its `bash` — the fallback's
  // own PATH lookup, or make/npm re-entering $SHELL — is the real shell, as inside a world.
  // Without this the fallback's `bash` would find the shim again, and again.
  if (!o.asSubstrate && process.env.SUBSTRATE_WORLD === "disabled" && process.env.SUBSTRATE_SPAN_ID) execShell(realShell, o.argv0, args);

  let inv: BashInvocation;
  try {
    inv = parseBashArgs(args, { anyShort: o.shell !== "bash" });
  } catch (e) {
    if (!(e instanceof BashUsageError)) throw e;
    if (o.asSubstrate) {
      // `substrate -c` with nothing after it: the CLI's own error style (reportError prints it)
      const { CliError, ExitCode } = await import("./_errors.ts");
      throw new CliError(ExitCode.USAGE, e.message, "substrate takes bash's forms: substrate -c 'cmd' [ARG0 ARG…]; see substrate --help");
    }
    // bash's own first line and exit status. (Never the host's shell with the rejected option:
    // an option our grammar lacks but the shell has — any zsh option, a newer bash's — would
    // start that shell on the host.)
    process.stderr.write(`${o.shell}: ${e.message}\n${BASH_USAGE}`);
    return 2;
  }
  // `--version` / `--help` print and exit before anything runs (bash ignores the rest): the
  // host's own shell answers, which is exactly what a probe wants to see (`bash --version`).
  if (inv.version) execShell(realShell, o.shell, ["--version"]);
  if (inv.help) execShell(realShell, o.shell, ["--help"]);

  const [{ runEntry }, side] = await Promise.all([import("./_entry-run.ts"), import("./bash-side.ts")]);
  const cwd = process.cwd();
  const env = { ...process.env };
  // A terminal on both ends: a PTY in the world (window size, raw keys). Anything else:
  // pipes (stdout and stderr apart; redirected stdin forwarded as it arrives).
  const io = process.stdin.isTTY && process.stdout.isTTY ? "pty" : "pipes";
  const channels = side.sideChannels(inv, env);
  const ctx = { cwd, env, ...(o.worldFlag !== undefined ? { worldFlag: o.worldFlag } : {}) };
  await side.beforeRun(channels, ctx);

  const out = await runEntry({
    argv: [worldArgv0(o.shell, realShell, env.PATH, o.argv0), ...args],
    cwd,
    env,
    io,
    component: "shell",
    asker: "tty",
    // TERM/INT/HUP reach the command's process group in the world (its own traps run); a
    // SIGKILL of the entry closes the stream and the world kills the whole tree.
    forwardSignals: ["SIGTERM", "SIGINT", "SIGHUP"],
    ...(o.worldFlag !== undefined ? { worldFlag: o.worldFlag } : {}),
  });
  await side.afterRun(channels, out, ctx);
  return out.exit;
}
