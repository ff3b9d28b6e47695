/**
 * Issue 16: bash's own invocation forms, parsed only as far as Substrate needs them — to find
 * the script the policy decides on, whether it is interactive, and the fast paths (--version,
 * --help). The arguments themselves are never rewritten: the real bash in the world gets them
 * exactly as given (same flags, same order, same positional parameters).
 *
 * Grammar (bash 5, `shell.c`): long options first (`--login`, `--noprofile`, `--norc`,
 * `--rcfile F`, `--init-file F`, `--posix`, `--verbose`, `--version`, `--help`, ...); then
 * option clusters `-abc` / `+abc` where `o` and `O` take the next argument; `--` or `-` ends
 * the options. With `-c`, the first argument after the options is the command string and the
 * rest are `$0 $1 …`; without `-c`/`-s`, the first is a script file; otherwise the script
 * comes from stdin (`-s`, or no arguments at all).
 */

export type BashMode = "command" | "script" | "stdin";

export interface BashInvocation {
  mode: BashMode;
  /** `-c`: the command string (what the policy decides on). */
  command?: string;
  /** SCRIPT mode: the script path as given. */
  script?: string;
  /** What follows the command string or script (for `-c`: `$0` first). */
  positional: string[];
  /** `-i` was given. */
  interactive: boolean;
  /** `-l` / `--login`. */
  login: boolean;
  /** `--version` (bash prints it and exits, whatever else was given). */
  version: boolean;
  /** `--help`. */
  help: boolean;
}

export class BashUsageError extends Error {
  override name = "BashUsageError";
  /** the argument bash itself rejects alone in the same words (`bash -Z`, `bash -c`) */
  constructor(
    message: string,
    readonly arg: string,
  ) {
    super(message);
  }
}

/** Long options bash accepts (bash 5.2 `long_args`); the two that take a value are below. */
const LONG_FLAGS = new Set(["--debug", "--debugger", "--dump-po-strings", "--dump-strings", "--help", "--login", "--noediting", "--noprofile", "--norc", "--posix", "--pretty-print", "--protected", "--restricted", "--verbose", "--version", "--wordexp"]);
const LONG_WITH_VALUE = new Set(["--rcfile", "--init-file"]);
/** Single-letter options: bash's own (c i l r s D) plus every `set` flag. */
const SHORT = new Set([..."cilrsD", ..."abefhkmnptuvxBCEHPT"]);

/**
 * Parse bash's argv (without argv[0]). Throws BashUsageError with bash's own wording.
 * `anyShort`: accept every single-letter option (zsh, sh: their own option sets; the real
 * shell in the world refuses what it does not know — nothing runs on the host either way).
 */
export function parseBashArgs(args: string[], o: { anyShort?: boolean } = {}): BashInvocation {
  const r: BashInvocation = { mode: "stdin", positional: [], interactive: false, login: false, version: false, help: false };
  let cflag = false;
  let sflag = false;
  let i = 0;
  // Long options (only before the first short option, as in bash).
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      i++;
      return finish(args.slice(i));
    }
    if (!a.startsWith("--") || a.length === 2) break;
    const name = a.includes("=") ? a.slice(0, a.indexOf("=")) : a;
    if (LONG_WITH_VALUE.has(name)) {
      if (!a.includes("=")) {
        if (i + 1 >= args.length) throw new BashUsageError(`${a}: option requires an argument`, a);
        i++;
      }
      continue;
    }
    if (!LONG_FLAGS.has(a)) throw new BashUsageError(`${a}: invalid option`, a);
    if (a === "--login") r.login = true;
    if (a === "--version") r.version = true;
    if (a === "--help") r.help = true;
  }
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--" || a === "-") {
      i++;
      break;
    }
    if (!(a.startsWith("-") || a.startsWith("+")) || a.length < 2) break;
    const on = a[0] === "-";
    for (let k = 1; k < a.length; k++) {
      const ch = a[k]!;
      if (ch === "o" || ch === "O") {
        // `-o NAME` / `-O NAME` (and bare `-o` = list options, allowed last)
        if (i + 1 < args.length) i++;
        continue;
      }
      if (!SHORT.has(ch) && !(o.anyShort && /[A-Za-z0-9]/.test(ch))) throw new BashUsageError(`${a[0]}${ch}: invalid option`, `${a[0]}${ch}`);
      if (!on) continue;
      if (ch === "c") cflag = true;
      else if (ch === "s") sflag = true;
      else if (ch === "i") r.interactive = true;
      else if (ch === "l") r.login = true;
    }
  }
  return finish(args.slice(i));

  function finish(rest: string[]): BashInvocation {
    if (r.version || r.help) return r;
    if (cflag) {
      if (rest.length === 0) throw new BashUsageError("-c: option requires an argument", "-c");
      r.mode = "command";
      r.command = rest[0];
      r.positional = rest.slice(1);
    } else if (!sflag && rest.length > 0) {
      r.mode = "script";
      r.script = rest[0];
      r.positional = rest.slice(1);
    } else {
      r.mode = "stdin";
      r.positional = rest;
    }
    return r;
  }
}

/** What the policy decides on and the trace records: the script itself, never a rewrite. */
export function policySubject(inv: BashInvocation): string {
  if (inv.mode === "command") return inv.command!;
  if (inv.mode === "script") return ["bash", inv.script!, ...inv.positional].map(shellQuote).join(" ");
  return inv.interactive || inv.positional.length === 0 ? "bash" : ["bash", "-s", ...inv.positional].map(shellQuote).join(" ");
}

/** POSIX single-quote (for display and for the few strings Substrate itself composes). */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'"'"'`)}'`;
}

/** Bash's own usage text (`bash --help`'s first lines), for our errors. */
export const BASH_USAGE = "Usage:\tbash [GNU long option] [option] ...\n\tbash [GNU long option] [option] script-file ...\n";
