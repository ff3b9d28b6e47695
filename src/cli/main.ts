/**
 * The `substrate` command. The root level is dispatched here (citty would take the `-c`
 * value for a subcommand name); subcommands are citty commands, one file each, loaded
 * lazily so `substrate -c` pays for none of them. A plain `-c CMD …` first tries the fast
 * path (./fast.ts, issue 17), which falls back to the pipeline for anything it does not
 * handle. Static imports stay light (no citty, no zod): `--version` and `-c` load only this.
 */
import type { CommandDef } from "citty";
import { versionInfo, versionString } from "../version.ts";
import { CliError, ExitCode } from "./_errors.ts";
import { setGlobals } from "./_globals.ts";
import { shellNameOf } from "./shell-name.ts";

type Lazy = () => Promise<CommandDef<any>>;
const lazy = (load: () => Promise<{ default: CommandDef<any> }>): Lazy => () => load().then((m) => m.default);

/** Subcommands, one file each under src/cli/. Keep alphabetical. */
export const subCommands: Record<string, Lazy> = {
  agent: lazy(() => import("./agent.ts")), // route coding agents through Substrate (issue 16)
  apply: lazy(() => import("./apply.ts")), // land an isolated result (issue 3)
  approve: lazy(() => import("./approve.ts")), // answer pending approvals at a terminal (issue 18.5)
  completions: lazy(() => import("./completions.ts")), // shell completion scripts (issue 9)
  diff: lazy(() => import("./diff.ts")), // an isolated result's fs diff (issue 3)
  discard: lazy(() => import("./discard.ts")), // drop an isolated result (issue 3)
  graph: lazy(() => import("./graph.ts")), // span graph queries (issue 5)
  health: lazy(() => import("./health.ts")), // one summary: doctor, policy, shims, trace, agent (issue 10)
  host: lazy(() => import("./host.ts")), // host doctor (DS0)
  mcp: lazy(() => import("./mcp.ts")), // MCP exec server (issue 16)
  policy: lazy(() => import("./policy.ts")), // policy init/validate/show/reload (issue 4)
  proxy: lazy(() => import("./proxy.ts")), // host proxy for the agent API (issue 6)
  replay: lazy(() => import("./replay.ts")), // replay a span in a fresh world (issue 5)
  run: lazy(() => import("./run-program.ts")), // start a program with all shell use routed here (issue 16)
  shell: lazy(() => import("./shell.ts")), // interactive shell in the world (issue 6)
  shim: lazy(() => import("./shim.ts")), // PATH shims (issue 4)
  trace: lazy(() => import("./trace.ts")), // show / list / follow spans (issue 5)
  world: lazy(() => import("./world.ts")),
};

// citty's defineCommand is the identity: a plain object keeps citty off the startup path
export const rootCommand: CommandDef<any> = {
  meta: {
    name: "substrate",
    version: versionString(),
    description: "Run commands in an isolated Linux world (policy, trace, agent API).",
  },
  args: {
    c: { type: "string", description: "Run CMD in the world and exit with its exit code", valueHint: "CMD" },
    world: { type: "boolean", description: "Require the world (--no-world: run on the host)" },
    pty: { type: "boolean", description: "With -c: run CMD on a PTY in the world (raw terminal, resize, exit code)" },
    isolated: { type: "boolean", description: "With -c: run in a fresh overlay world; changes are kept for `substrate apply`" },
    "require-approval": { type: "boolean", description: "With -c: ask before running (with a diff preview), whatever the policy says" },
    version: { type: "boolean", description: "Print the version (--json: as JSON)" },
    json: { type: "boolean", description: "Machine-readable output where the command prints data" },
  },
  subCommands,
};

const say = (line: string) => process.stderr.write(`substrate: ${line}\n`);

interface RootArgs {
  cmd?: string;
  world?: boolean;
  version: boolean;
  json: boolean;
  help: boolean;
  pty: boolean;
  isolated: boolean;
  requireApproval: boolean;
  rest: string[];
  /** Issue 16: bash's own invocation forms (`-c CMD ARG0…`, `-lc`, `-s`, SCRIPT …): everything from the first one on */
  bash?: string[];
}

/** A bash option that starts bash's own forms (`-c`, `-lc`, `-i`, `-s`, `-o pipefail`, `--login`, …). */
const BASH_LONG = new Set(["--login", "--noprofile", "--norc", "--rcfile", "--init-file", "--posix", "--restricted", "--verbose", "--noediting", "--debugger"]);
function isBashOption(a: string): boolean {
  if (BASH_LONG.has(a) || a.startsWith("--rcfile=") || a.startsWith("--init-file=")) return true;
  return /^[-+][abcefhiklmnoprstuvxBCDEHOPT]+$/.test(a) && a !== "-h";
}

/** Parse flags before the first positional (the subcommand); the rest goes to it. */
export function parseRoot(argv: string[]): RootArgs {
  const r: RootArgs = { version: false, json: false, help: false, pty: false, isolated: false, requireApproval: false, rest: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--command" || a.startsWith("--command=")) {
      const v = a === "--command" ? argv[i + 1] : a.slice(10);
      if (v === undefined) throw new CliError(ExitCode.USAGE, `${a} needs a command string`, "example: substrate -c 'ls -la'");
      r.bash = ["-c", v, ...argv.slice(a === "--command" ? i + 2 : i + 1)];
      break;
    } else if (a === "--world") r.world = true;
    else if (a === "--no-world") r.world = false;
    else if (a === "--version" || a === "-V") r.version = true;
    else if (a === "--json") r.json = true;
    else if (a === "--pty") r.pty = true;
    else if (a === "--isolated") r.isolated = true;
    else if (a === "--require-approval") r.requireApproval = true;
    else if (a === "--help" || a === "-h") r.help = true;
    else if (isBashOption(a)) {
      // Issue 16: from here on it is bash's command line, passed on unchanged.
      r.bash = argv.slice(i);
      break;
    } else if (a === "--") {
      r.rest = argv.slice(i + 1);
      break;
    } else if (a.startsWith("-")) throw new CliError(ExitCode.USAGE, `unknown option ${a}`, "see `substrate --help`");
    else {
      r.rest = argv.slice(i);
      break;
    }
  }
  // `-c CMD` alone (no bash flags, no positional parameters): also kept as `cmd` for the
  // flags that have only a `-c` form (--pty, --isolated, --require-approval).
  if (r.bash && r.bash[0] === "-c" && r.bash.length === 2) r.cmd = r.bash[1];
  return r;
}

/** Root usage: bash's forms first (citty would render `-c` as `--c=<CMD>`), then citty's options and commands. */
export const BASH_FORMS_USAGE = `USAGE
  substrate [--world|--no-world] [BASH OPTION...] -c COMMAND [ARG0 [ARG...]]
  substrate [--world|--no-world] [BASH OPTION...] SCRIPT [ARG...]
  substrate [--world|--no-world] [BASH OPTION...] -s [ARG...]        (the script on stdin)
  substrate -i                                                        (interactive bash, on this terminal)
  substrate [--pty | --isolated | --require-approval] -c COMMAND
  substrate <command> [...]
  bash [BASH OPTION...] ...        the same binary named bash (~/.substrate/shims/bash; also sh, zsh)

  A real bash in the world runs the script unchanged, with these options and positional
  parameters, your cwd, environment and stdin (a terminal: a PTY in the world), stdout and
  stderr apart, and its exit status (128+N for a signal). The policy decides first.
  Inside a world the entry runs the real shell directly.

BASH OPTIONS (as in bash; passed on unchanged)
  -c COMMAND        read commands from COMMAND; ARG0 sets $0, ARG... $1 ...
  -l, --login       act as a login shell (-lc, -c -l, -l -c, -l -i -c all work)
  -i                interactive shell
  -s                read commands from stdin (ARG... are $1 ...)
  -e, -x, -u, ...   set options (as \`set -e\`, ...);  -o OPTION, +o OPTION, -O SHOPT
  --noprofile, --norc, --rcfile FILE, --posix
  --                end of options
  --version         print bash's version (the shim: instant, nothing runs)
`;

async function usage(cmd: CommandDef<any> = rootCommand, parent?: CommandDef<any>): Promise<string> {
  const { renderUsage } = await import("citty");
  const text = await renderUsage(cmd, parent);
  if (cmd !== rootCommand) return text;
  // citty may colour its output: match on the text without ANSI escapes
  const plain = (l: string) => l.replace(/\x1b\[[0-9;]*m/g, "");
  const lines = text.split("\n").filter((l) => !plain(l).includes("--c=<CMD>"));
  const at = lines.findIndex((l) => plain(l).startsWith("USAGE"));
  if (at >= 0) lines.splice(at, 1, ...BASH_FORMS_USAGE.trimEnd().split("\n"));
  return lines.join("\n");
}

export async function main(argv: string[], argv0: string = process.argv0): Promise<number> {
  try {
    // Issue 17: a plain `-c CMD …` (substrate's or the bash shim's) — the fast path, or null.
    if (argv[0] === "-c") {
      const { fastPath } = await import("./fast.ts");
      const code = await fastPath(argv, argv0);
      if (code !== null) return code;
    }
    // Issue 16: invoked as `bash` / `sh` / `zsh` (the shim): bash's command line, nothing else.
    const shell = shellNameOf(argv0);
    if (shell) {
      const { bashEntry } = await import("./bash.ts");
      return await bashEntry(argv, { shell, argv0 });
    }
    const root = parseRoot(argv);
    setGlobals({ world: root.world, json: root.json });
    if (root.version && root.cmd === undefined && root.rest.length === 0) {
      console.log(root.json ? JSON.stringify(versionInfo()) : `substrate ${versionString()}`);
      return ExitCode.OK;
    }
    if (root.bash && (root.pty || root.isolated || root.requireApproval) && root.cmd === undefined)
      throw new CliError(ExitCode.USAGE, "--pty, --isolated and --require-approval take only -c COMMAND", "e.g. substrate --isolated -c 'npm install'");
    if (root.cmd !== undefined && (root.pty || root.isolated || root.requireApproval)) {
      if (root.pty) {
        // Issue 6: `--pty -c` goes through the /v1/stream PTY (src/cli/_pty.ts).
        const { runPtyCommandLine } = await import("./_pty.ts");
        return await runPtyCommandLine({ cmd: root.cmd, worldFlag: root.world, isolated: root.isolated, requireApproval: root.requireApproval });
      }
      const { runCommandLine } = await import("./run.ts");
      return await runCommandLine({ cmd: root.cmd, worldFlag: root.world, isolated: root.isolated, requireApproval: root.requireApproval });
    }
    if (root.bash) {
      const { bashEntry } = await import("./bash.ts");
      return await bashEntry(root.bash, { shell: "bash", argv0: "bash", asSubstrate: true, ...(root.world !== undefined ? { worldFlag: root.world } : {}) });
    }
    const [name, ...rest] = root.rest;
    if (name === undefined) {
      if (root.help || !process.stdin.isTTY) {
        console.log(await usage());
        return root.help ? ExitCode.OK : ExitCode.USAGE;
      }
      const shell = subCommands.shell;
      if (!shell) throw new CliError(ExitCode.UNSUPPORTED, "the interactive shell is not available in this build", "use substrate -c 'cmd'");
      const { runCommand } = await import("citty");
      await runCommand(await shell(), { rawArgs: rest });
      return Number(process.exitCode ?? 0);
    }
    const load = subCommands[name];
    // `substrate SCRIPT [ARGS]`, as `bash SCRIPT [ARGS]` (a subcommand name wins over a file of that name)
    // (node:fs only here: its import costs ~1.5 ms of every start, `--version` included)
    if (!load && (name.includes("/") || (require("node:fs") as typeof import("node:fs")).existsSync(name))) {
      const { bashEntry } = await import("./bash.ts");
      return await bashEntry(root.rest, { shell: "bash", argv0: "bash", asSubstrate: true, ...(root.world !== undefined ? { worldFlag: root.world } : {}) });
    }
    if (!load)
      throw new CliError(ExitCode.USAGE, `unknown command ${name}`, `commands: ${Object.keys(subCommands).sort().join(", ")}; or substrate -c 'cmd'`);
    const sub = await load();
    const own = rest.includes("--") ? rest.slice(0, rest.indexOf("--")) : rest; // `run -- PROG --help` is PROG's
    if (root.help || own.includes("--help") || own.includes("-h")) {
      console.log(await usage(await resolveLeaf(sub, rest), rootCommand));
      return ExitCode.OK;
    }
    const { runCommand } = await import("citty");
    await runCommand(sub, { rawArgs: rest });
    return Number(process.exitCode ?? 0);
  } catch (e) {
    return reportError(e);
  }
}

/** The deepest subcommand named in args (for --help). */
async function resolveLeaf(cmd: CommandDef<any>, args: string[]): Promise<CommandDef<any>> {
  const subs = typeof cmd.subCommands === "function" ? await (cmd.subCommands as () => Promise<Record<string, any>>)() : await cmd.subCommands;
  const next = args.find((a) => !a.startsWith("-"));
  if (!subs || !next || !(next in subs)) return cmd;
  const s = subs[next];
  const def = typeof s === "function" ? await s() : await s;
  return resolveLeaf(def, args.slice(args.indexOf(next) + 1));
}

export function reportError(e: unknown): number {
  if (e instanceof CliError) {
    say(e.message);
    if (e.hint) say(`hint: ${e.hint}`);
    return e.exitCode;
  }
  const err = e as Error & { code?: string };
  if (err?.name === "CLIError") {
    // citty: unknown subcommand, missing required argument, ...
    say(err.message);
    say("hint: add --help for usage");
    return ExitCode.USAGE;
  }
  say(`internal error: ${err?.message ?? String(e)}`);
  if (process.env.SUBSTRATE_DEBUG) process.stderr.write(`${err?.stack}\n`);
  else say("hint: re-run with SUBSTRATE_DEBUG=1 for details, and report it");
  return ExitCode.INTERNAL;
}
