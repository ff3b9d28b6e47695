/**
 * `substrate completions bash|zsh|fish`: generated from the citty tree, then exercised in the
 * real shells (bash: COMP_WORDS + _substrate; zsh: the completion function with _describe
 * captured; fish: `complete -C`).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { commandTree, type CommandNode } from "../../src/cli/completions.ts";
import { rootCommand, subCommands } from "../../src/cli/main.ts";
import { BUN, ROOT, run } from "./release-helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "substrate-completions-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function script(shell: string): Promise<string> {
  const r = await run([BUN, join(ROOT, "src/main.ts"), "completions", shell]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  const f = join(dir, `completion.${shell}`);
  writeFileSync(f, r.stdout);
  return f;
}

test("the tree has every registered subcommand and their subcommands", async () => {
  const tree = await commandTree(rootCommand);
  expect(tree.subs.map((s) => s.name)).toEqual(Object.keys(subCommands).sort());
  const world = tree.subs.find((s) => s.name === "world")!;
  expect(world.subs.map((s) => s.name)).toContain("doctor");
  const doctor = world.subs.find((s) => s.name === "doctor")!;
  expect(doctor.path).toBe("world doctor");
  expect(doctor.flags.map((f) => f.flag)).toEqual(expect.arrayContaining(["--json", "--help"]));
  expect(tree.flags.find((f) => f.flag === "-c")?.valued).toBe(true);
  expect(tree.flags.map((f) => f.flag)).toContain("--no-world"); // documented negation
  const paths = (n: CommandNode): string[] => [n.path, ...n.subs.flatMap(paths)];
  expect(new Set(paths(tree)).size).toBe(paths(tree).length);
});

test("bash: subcommands, nested subcommands, flags, and a valued flag's argument", async () => {
  const f = await script("bash");
  expect((await run(["bash", "-n", f])).code).toBe(0);
  const probe = `source ${JSON.stringify(f)}
t() { COMP_WORDS=("$@"); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); COMPREPLY=(); _substrate; echo "\${COMPREPLY[*]}"; }
t substrate wo
t substrate world ''
t substrate --json host d
t substrate world doctor --j
t substrate -c world ''
t substrate completions ''
complete -p substrate
`;
  const r = await run(["bash", "-c", probe], { cwd: dir });
  expect(r.stderr).toBe("");
  const [wo, worldSubs, hostD, docJ, afterC, shells, spec] = r.stdout.split("\n");
  expect(wo).toBe("world");
  expect(worldSubs!.split(" ")).toEqual(expect.arrayContaining(["doctor", "warm", "status"]));
  expect(hostD).toBe("doctor");
  expect(docJ).toBe("--json");
  // `-c world`: "world" is -c's value, not the subcommand, so the root's commands are offered.
  expect(afterC!.split(" ")).toContain("completions");
  expect(shells).toBe("bash zsh fish"); // the positional's enumerated values
  expect(spec).toBe("complete -o default -F _substrate substrate");
});

test("zsh: parses, and the completion function offers the right words", async () => {
  const f = await script("zsh");
  expect((await run(["zsh", "-n", f])).code).toBe(0);
  // Outside compinit: capture what would be offered instead of drawing a menu.
  const probe = `compdef() { :; }
_describe() { print -rl -- "\${(@P)\${@[-1]}}"; }
_files() { print -r -- '<files>'; }
source ${JSON.stringify(f)}
t() { words=("$@"); CURRENT=\${#words}; _substrate; print -- '--'; }
t substrate ''
t substrate world doctor -
t substrate -c ''
t substrate completions ''
`;
  const r = await run(["zsh", "-f", "-c", probe]);
  expect(r.stderr).toBe("");
  const [root, doctor, afterC, shells] = r.stdout.split("--\n").map((b) => b.trim().split("\n"));
  expect(root).toContain("world:Manage the world: assets, warm, status, stop, doctor");
  expect(root!.some((l) => l.startsWith("completions:"))).toBe(true);
  expect(doctor!.map((l) => l.split(":")[0])).toEqual(expect.arrayContaining(["--json", "--world", "--no-world", "--help"]));
  expect(afterC).toEqual(["<files>"]);
  expect(shells).toEqual(["bash", "zsh", "fish"]);
});

test("fish: complete -C offers subcommands with descriptions and per-command flags", async () => {
  const f = await script("fish");
  expect((await run(["fish", "--no-execute", f])).code).toBe(0);
  const r = await run(["fish", "--no-config", "-c", `source ${JSON.stringify(f)}; complete -C'substrate wor'; echo ==; complete -C'substrate world doctor --'; echo ==; complete -C'substrate host '; echo ==; complete -C'substrate completions '`]);
  expect(r.stderr).toBe("");
  const [wor, flags, host, shells] = r.stdout.split("==\n").map((b) => b.trim().split("\n"));
  expect(wor).toEqual(["world\tManage the world: assets, warm, status, stop, doctor"]);
  expect(flags!.map((l) => l.split("\t")[0])).toEqual(expect.arrayContaining(["--json", "--world", "--no-world", "--help"]));
  expect(host!.map((l) => l.split("\t")[0])).toEqual(["doctor"]);
  expect(shells!.sort()).toEqual(["bash", "fish", "zsh"]);
});

test("an unknown shell is a usage error with the choices", async () => {
  const r = await run([BUN, join(ROOT, "src/main.ts"), "completions", "tcsh"]);
  expect(r.code).toBe(2);
  expect(r.stderr).toContain("unknown shell tcsh");
  expect(r.stderr).toContain("one of: bash, zsh, fish");
});
