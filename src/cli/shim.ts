/** `substrate shim install|list|remove|check` — PATH shims (src/shim/script.ts explains them). */
import { join } from "node:path";
import { defineCommand } from "citty";
import { substrateDir } from "../broker/load.ts";
import { DEFAULT_SHIMS, installShims, listShims, removeShims } from "../shim/script.ts";
import { runShimCheck } from "../shim/check.ts";
import { CliError, ExitCode } from "./_errors.ts";

const shimDir = (dir?: string): string => dir ?? join(substrateDir(), "shims");

/** positionals citty leaves in `_` */
const names = (args: { _: string[] }): string[] => args._.filter((a) => a !== "--");

const install = defineCommand({
  meta: { name: "install", description: `Create PATH shims for commands (default: ${DEFAULT_SHIMS.join(" ")}) in ~/.substrate/shims` },
  args: {
    cmds: { type: "positional", required: false, description: "command names", valueHint: "CMD..." },
    dir: { type: "string", description: "shim directory (default ~/.substrate/shims)" },
  },
  run({ args }) {
    const list = names(args as unknown as { _: string[] });
    const dir = shimDir(args.dir as string | undefined);
    let r;
    try {
      r = installShims(list.length ? list : DEFAULT_SHIMS, dir);
    } catch (e) {
      throw new CliError(ExitCode.USAGE, (e as Error).message, "remove that file or pick another --dir");
    }
    console.log(`installed ${r.installed.length} shims in ${r.dir}: ${r.installed.join(" ")}`);
    console.log(`activate: export PATH="${r.dir}:$PATH"   (bypass one command: SHIM_BYPASS=1 cmd)`);
  },
});

const list = defineCommand({
  meta: { name: "list", description: "List installed shims" },
  args: { dir: { type: "string", description: "shim directory" } },
  run({ args }) {
    for (const n of listShims(shimDir(args.dir as string | undefined))) console.log(n);
  },
});

const remove = defineCommand({
  meta: { name: "remove", description: "Remove shims (all when no names are given)" },
  args: {
    cmds: { type: "positional", required: false, description: "command names", valueHint: "CMD..." },
    dir: { type: "string", description: "shim directory" },
  },
  run({ args }) {
    const removed = removeShims(names(args as unknown as { _: string[] }), shimDir(args.dir as string | undefined));
    console.log(removed.length ? `removed: ${removed.join(" ")}` : "no shims removed");
  },
});

const check = defineCommand({
  meta: { name: "check", description: "Used by the shims: quick policy check (deny list) of CMD ARGS; exit 126 when denied" },
  args: { argv: { type: "positional", required: false, description: "-- CMD ARGS...", valueHint: "-- CMD ARGS..." } },
  async run({ rawArgs }) {
    const k = rawArgs.indexOf("--");
    const argv = k >= 0 ? rawArgs.slice(k + 1) : rawArgs;
    if (argv.length === 0) throw new CliError(ExitCode.USAGE, "shim check needs a command", "usage: substrate shim check -- CMD ARGS...");
    const r = await runShimCheck({ argv, cwd: process.cwd(), stderr: process.stderr });
    // stdout is read by the shim: "<span id> <session id>" to export to the real command
    if (r.span) process.stdout.write(`${r.span.SUBSTRATE_SPAN_ID} ${r.span.SUBSTRATE_SESSION_ID}\n`);
    process.exitCode = r.exitCode;
  },
});

export default defineCommand({
  meta: { name: "shim", description: "PATH shims that check commands against the policy: install, list, remove" },
  subCommands: { install, list, remove, check },
});
