/**
 * The `substrate` command. The root level is dispatched here (citty would take the `-c`
 * value for a subcommand name); subcommands are citty commands, one file each, loaded
 * lazily so `substrate -c` pays for none of them.
 */
import { defineCommand, renderUsage, runCommand, type CommandDef } from "citty";
import { versionInfo, versionString } from "../version.ts";
import { CliError, ExitCode } from "./_errors.ts";
import { setGlobals } from "./_globals.ts";

type Lazy = () => Promise<CommandDef<any>>;
const lazy = (load: () => Promise<{ default: CommandDef<any> }>): Lazy => () => load().then((m) => m.default);

/** Subcommands, one file each under src/cli/. Keep alphabetical. */
export const subCommands: Record<string, Lazy> = {
  apply: lazy(() => import("./apply.ts")), // land an isolated result (issue 3)
  completions: lazy(() => import("./completions.ts")), // shell completion scripts (issue 9)
  diff: lazy(() => import("./diff.ts")), // an isolated result's fs diff (issue 3)
  discard: lazy(() => import("./discard.ts")), // drop an isolated result (issue 3)
  graph: lazy(() => import("./graph.ts")), // span graph queries (issue 5)
  health: lazy(() => import("./health.ts")), // one summary: doctor, policy, shims, trace, agent (issue 10)
  host: lazy(() => import("./host.ts")), // host doctor (DS0)
  policy: lazy(() => import("./policy.ts")), // policy init/validate/show/reload (issue 4)
  proxy: lazy(() => import("./proxy.ts")), // host proxy for the agent API (issue 6)
  replay: lazy(() => import("./replay.ts")), // replay a span in a fresh world (issue 5)
  shell: lazy(() => import("./shell.ts")), // interactive shell in the world (issue 6)
  shim: lazy(() => import("./shim.ts")), // PATH shims (issue 4)
  trace: lazy(() => import("./trace.ts")), // show / list / follow spans (issue 5)
  world: lazy(() => import("./world.ts")),
};

export const rootCommand = defineCommand({
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
});

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
}

/** Parse flags before the first positional (the subcommand); the rest goes to it. */
export function parseRoot(argv: string[]): RootArgs {
  const r: RootArgs = { version: false, json: false, help: false, pty: false, isolated: false, requireApproval: false, rest: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "-c" || a === "--command") {
      const v = argv[i + 1];
      if (v === undefined) throw new CliError(ExitCode.USAGE, `${a} needs a command string`, "example: substrate -c 'ls -la'");
      r.cmd = v;
      i++;
    } else if (a.startsWith("--command=")) r.cmd = a.slice(10);
    else if (a === "--world") r.world = true;
    else if (a === "--no-world") r.world = false;
    else if (a === "--version" || a === "-V") r.version = true;
    else if (a === "--json") r.json = true;
    else if (a === "--pty") r.pty = true;
    else if (a === "--isolated") r.isolated = true;
    else if (a === "--require-approval") r.requireApproval = true;
    else if (a === "--help" || a === "-h") r.help = true;
    else if (a === "--") {
      r.rest = argv.slice(i + 1);
      break;
    } else if (a.startsWith("-")) throw new CliError(ExitCode.USAGE, `unknown option ${a}`, "see `substrate --help`");
    else {
      r.rest = argv.slice(i);
      break;
    }
  }
  return r;
}

async function usage(cmd: CommandDef<any> = rootCommand, parent?: CommandDef<any>): Promise<string> {
  return renderUsage(cmd, parent);
}

export async function main(argv: string[]): Promise<number> {
  try {
    const root = parseRoot(argv);
    setGlobals({ world: root.world, json: root.json });
    if (root.version && root.cmd === undefined && root.rest.length === 0) {
      console.log(root.json ? JSON.stringify(versionInfo()) : `substrate ${versionString()}`);
      return ExitCode.OK;
    }
    if (root.cmd !== undefined) {
      if (root.rest.length) throw new CliError(ExitCode.USAGE, `unexpected argument ${root.rest[0]} after -c`, "quote the whole command: substrate -c 'cmd args'");
      if (root.pty) {
        // Issue 6: `--pty -c` goes through the /v1/stream PTY (src/cli/_pty.ts).
        const { runPtyCommandLine } = await import("./_pty.ts");
        return await runPtyCommandLine({ cmd: root.cmd, worldFlag: root.world });
      }
      const { runCommandLine } = await import("./run.ts");
      return await runCommandLine({ cmd: root.cmd, worldFlag: root.world, isolated: root.isolated, requireApproval: root.requireApproval });
    }
    const [name, ...rest] = root.rest;
    if (name === undefined) {
      if (root.help || !process.stdin.isTTY) {
        console.log(await usage());
        return root.help ? ExitCode.OK : ExitCode.USAGE;
      }
      const shell = subCommands.shell;
      if (!shell) throw new CliError(ExitCode.UNSUPPORTED, "the interactive shell is not available in this build", "use substrate -c 'cmd'");
      await runCommand(await shell(), { rawArgs: rest });
      return Number(process.exitCode ?? 0);
    }
    const load = subCommands[name];
    if (!load)
      throw new CliError(ExitCode.USAGE, `unknown command ${name}`, `commands: ${Object.keys(subCommands).sort().join(", ")}; or substrate -c 'cmd'`);
    const sub = await load();
    if (root.help || rest.includes("--help") || rest.includes("-h")) {
      console.log(await usage(await resolveLeaf(sub, rest), rootCommand));
      return ExitCode.OK;
    }
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
