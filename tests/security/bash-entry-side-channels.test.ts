/**
 * Issue 16, attacks on the bash entry's host-side effects, judged on the host:
 * - the in-world marker cannot be faked from the host (SUBSTRATE_WORLD=enabled + an id → still the world);
 * - a world command cannot get a world PID into Gemini's host bgpids file;
 * - Claude's cwd file gets only a plausible `pwd -P` answer, only on success, never through a
 *   planted symlink, and the script's text cannot make the entry write a host file outside the
 *   agent's temp dir.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { entryFixture, run, type EntryFixture } from "../integration/bash-entry-helpers.ts";

let f: EntryFixture;
let tmp: string;
beforeAll(async () => {
  f = await entryFixture();
  tmp = mkdtempSync("/tmp/substrate-side-attack-");
});
afterAll(async () => {
  await f.cleanup();
  rmSync(tmp, { recursive: true, force: true });
});
const env = () => f.env({ TMPDIR: tmp });
const sh = (script: string) => run([f.shim, "-c", script], { cwd: f.proj, env: env(), stdin: "devnull" });

test("an option the entry's grammar refuses never starts a shell on the host (zsh's -y, an unknown long option)", () => {
  const { readlinkSync, symlinkSync } = require("node:fs") as typeof import("node:fs");
  const marker = join(tmp, "host-shell-ran");
  const cases: [string, string[]][] = [[f.shim, ["--made-up-option"]], [f.shim, ["-Z"]]];
  try {
    const z = join(f.shimDir, "zsh");
    if (!existsSync(z)) symlinkSync(readlinkSync(f.shim), z);
    cases.push([z, ["-y"]]);
  } catch {} // the shim is a script (from source): the bash cases still run
  for (const [shell, args] of cases) {
    const r = run([shell, ...args], { cwd: f.proj, env: env(), stdin: `touch ${marker}\n` });
    if (shell === f.shim) expect(r.code).toBe(2); // bash's grammar refuses it; zsh's -y runs zsh in the world
    expect(existsSync(marker)).toBe(false);
  }
});

test("faking the in-world marker on the host does not skip the world (a real-looking id, or a substring of the host's init)", () => {
  const init = readFileSync("/proc/1/cmdline", "utf8").split("\0")[0] ?? "/";
  for (const id of ["wld_01a24259-fd41-70ec-839b-7280b6e98723", "/", init, init.slice(0, 3), "i"]) {
    const r = run([f.shim, "-c", "hostname"], { cwd: f.proj, env: f.env({ SUBSTRATE_WORLD: "enabled", SUBSTRATE_WORLD_ID: id }) });
    expect(r.out).toMatch(/^substrate-[0-9a-f]{8}\n$/);
  }
});

test("Gemini: a command that writes PIDs into the bgpids file (world or forged) leaves the host file empty", () => {
  const dir = mkdtempSync(join(tmp, "gemini-shell-"));
  const file = join(dir, "bgpids.tmp");
  const r = sh(`_bgpids_file=${file}\n(\n  trap 'jobs -p > "$_bgpids_file"' EXIT\necho 1 > "$_bgpids_file"; sleep 0.1 & echo $$ >> "$_bgpids_file"\n)\n__code=$?\nexit $__code`);
  expect(r.code).toBe(0);
  expect(readFileSync(file, "utf8")).toBe("");
});

test("Claude: a failing command writes no cwd file; a success writes only the world's real pwd -P", () => {
  const cwdFile = join(tmp, "claude-a1-cwd");
  sh(`eval 'cd / && false' < /dev/null && pwd -P >| ${cwdFile}`);
  expect(existsSync(cwdFile)).toBe(false);
  // the world's pwd -P names a directory only the world has: nothing for the host to cd into
  const onlyWorld = `/tmp/substrate-only-in-world-${process.pid}`;
  const f2 = join(tmp, "claude-b2-cwd");
  const r = sh(`eval 'mkdir -p ${onlyWorld} && cd ${onlyWorld}' < /dev/null && pwd -P >| ${f2}`);
  expect(r.code).toBe(0);
  expect(existsSync(f2)).toBe(false);
  const f3 = join(tmp, "claude-b3-cwd");
  sh(`eval 'cd .' < /dev/null && pwd -P >| ${f3}`);
  expect(readFileSync(f3, "utf8")).toBe(`${f.proj}\n`);
});

test("Claude: a symlink planted at the cwd file's path is not followed", () => {
  const victim = join(tmp, "victim.txt");
  writeFileSync(victim, "keep\n");
  const cwdFile = join(tmp, "claude-c3-cwd");
  symlinkSync(victim, cwdFile);
  sh(`eval 'true' < /dev/null && pwd -P >| ${cwdFile}`);
  expect(readFileSync(victim, "utf8")).toBe("keep\n");
});

test("the script's text cannot choose a host path outside the agent's temp dir", () => {
  const elsewhere = join(f.home, "notes");
  mkdirSync(elsewhere, { recursive: true });
  const target = join(elsewhere, "claude-d4-cwd");
  sh(`eval 'true' < /dev/null && pwd -P >| ${target}`);
  expect(existsSync(target)).toBe(false);
  const gem = join(elsewhere, "gemini-shell-x");
  mkdirSync(gem);
  sh(`_bgpids_file=${join(gem, "bgpids.tmp")}\n(\n  true\n)\nexit 0`);
  expect(existsSync(join(gem, "bgpids.tmp"))).toBe(false);
});
