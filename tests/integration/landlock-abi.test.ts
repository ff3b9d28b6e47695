/**
 * Landlock's per-ABI rights, for real: the same rules applied as kernels of ABI 1, 2, 3 and the
 * running one would apply them. Shows why the handled set must follow the ABI (and what an
 * older kernel leaves open).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { handledFsRights, landlockAbi } from "../../agent/world/landlock.ts";

const CHILD = join(import.meta.dir, "fixtures", "landlock-abi-child.ts");
const kernel = landlockAbi();
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "substrate-llabi-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(abi: number) {
  const d = join(dir, `abi${abi}`);
  mkdirSync(join(d, "rw", "sub"), { recursive: true });
  writeFileSync(join(d, "rw", "a"), "a");
  writeFileSync(join(d, "outside.txt"), "keep me");
  const p = Bun.spawnSync([process.execPath, CHILD, String(abi), d], { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(p.stderr.toString());
  return JSON.parse(p.stdout.toString());
}

test("handled rights grow with the ABI", () => {
  expect(handledFsRights(1)).toBe(0x1fffn);
  expect(handledFsRights(2)).toBe(0x3fffn);
  expect(handledFsRights(3)).toBe(0x7fffn);
  expect(handledFsRights(4)).toBe(0x7fffn);
  expect(handledFsRights(5)).toBe(0xffffn);
  expect(handledFsRights(7)).toBe(0xffffn);
});

test.if(kernel !== null)("the running kernel's ABI is reported (>= 1)", () => {
  expect(kernel).toBeGreaterThanOrEqual(1);
  const r = run(kernel!);
  expect(r).toMatchObject({ abi: kernel, write_inside: true, write_outside: false, rename_across_dirs: "ok", truncate_outside: 13 /* EACCES */ });
  expect(r.scoped).toBe(kernel! >= 6);
});

test.if(kernel !== null && kernel >= 3)("ABI 1: no REFER right, so cross-directory renames are always denied", () => {
  expect(run(1)).toMatchObject({ abi: 1, write_inside: true, write_outside: false, rename_across_dirs: "EXDEV" });
});

test.if(kernel !== null && kernel >= 3)("ABI 2: truncate(2) outside the rw paths is NOT restricted (TRUNCATE came in ABI 3)", () => {
  expect(run(2)).toMatchObject({ abi: 2, rename_across_dirs: "ok", write_outside: false, truncate_outside: "ok" });
  expect(run(3)).toMatchObject({ abi: 3, truncate_outside: 13 /* EACCES */ });
});
