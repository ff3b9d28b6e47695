/** The pure parts of the fs diff: ordering, truncation priority, summary, tree-hash stability. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildFsDiff, compareUtf8, sortChanges, treeHash, treeHashAsync, type Change } from "../../../agent/world/fsdiff.ts";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "substrate-fsdiff-unit-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("compareUtf8 orders by code point (= UTF-8 bytes), not UTF-16 units", () => {
  const s = ["b", "a/", "a", "\u{1F600}", "\uFF01", "a/b", "A"];
  expect([...s].sort(compareUtf8)).toEqual(["A", "a", "a/", "a/b", "b", "\uFF01", "\u{1F600}"]);
  // Plain JS sort puts the astral char (surrogates D83D...) before U+FF01: the case we fix.
  expect([...s].sort().indexOf("\u{1F600}")).toBeLessThan([...s].sort().indexOf("\uFF01"));
  const bytes = [...s].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
  expect([...s].sort(compareUtf8)).toEqual(bytes);
});

const w = (path: string): Change => ({ kind: "write", path, type: path.endsWith("/") ? "dir" : "file" });

test("no truncation below the limits: lists everything, summary without suffix, no hash", () => {
  const d = buildFsDiff(sortChanges([w("b"), w("a/"), w("a/x"), { kind: "mod", path: "m", type: "file" }, { kind: "delete", path: "z/", type: "dir" }]));
  expect(d).toEqual({ writes: ["a/", "a/x", "b"], mods: ["m"], deletes: ["z/"], summary: "2 dirs, 3 files" });
});

test("truncation keeps mods and deletes, then the shallowest writes; exactly at the limit is not truncated", () => {
  const deep = Array.from({ length: 20 }, (_, i) => w(`deep/a/b/c/f${String(i).padStart(2, "0")}`));
  const top = Array.from({ length: 5 }, (_, i) => w(`t${i}`));
  const cs = sortChanges([...deep, ...top, { kind: "mod", path: "zz/lock.json", type: "file" }, { kind: "delete", path: "old.txt", type: "file" }]);
  const exact = buildFsDiff(cs, { maxFiles: 27, maxDirs: 0 });
  expect(exact.truncated).toBeUndefined();
  // tree hash on a synthetic list: deletes-only entries need no upper file; writes have no
  // `upper` here either, so they hash as path-only records.
  const d = buildFsDiff(cs, { maxFiles: 8, maxDirs: 10 });
  expect(d.truncated).toBe(true);
  expect(d.mods).toEqual(["zz/lock.json"]);
  expect(d.deletes).toEqual(["old.txt"]);
  expect(d.writes).toEqual(["deep/a/b/c/f00", "t0", "t1", "t2", "t3", "t4"]);
  expect(d.summary).toBe("0 dirs, 27 files (truncated, see tree_hash)");
  expect(d.tree_hash).toMatch(/^sha256:[0-9a-f]{64}$/);
});

test("tree hash: independent of input order, sensitive to content and mode, matches the documented definition", async () => {
  const f = (name: string, content: string, mode = 0o644) => {
    const p = join(dir, name);
    writeFileSync(p, content);
    chmodSync(p, mode);
    return p;
  };
  mkdirSync(join(dir, "d"));
  const mk = (a: string, b: string, mode?: number): Change[] => [
    { kind: "write", path: "x.txt", type: "file", upper: f("x", a) },
    { kind: "mod", path: "y.txt", type: "file", upper: f("y", b, mode) },
    { kind: "write", path: "d/", type: "dir", upper: join(dir, "d") },
    { kind: "delete", path: "gone", type: "file" },
  ];
  const h1 = treeHash(sortChanges(mk("1", "2")));
  const h2 = treeHash(sortChanges(mk("1", "2").reverse()));
  expect(h2).toBe(h1);
  expect(treeHash(sortChanges(mk("1", "3")))).not.toBe(h1);
  expect(treeHash(sortChanges(mk("1", "2", 0o755)))).not.toBe(h1);
  expect(treeHash(sortChanges(mk("1", "2")))).toBe(h1);
  expect(await treeHashAsync(sortChanges(mk("1", "2")))).toBe(h1);
  // Golden: the definition in docs/FS_DIFF.md, recomputed by hand.
  const sha = (s: string) => new Bun.CryptoHasher("sha256").update(s).digest("hex");
  const dmode = (Bun.spawnSync(["stat", "-c", "%a", join(dir, "d")]).stdout.toString().trim());
  const lines = [
    JSON.stringify(["W", "d/", "d", Number.parseInt(dmode, 8)]),
    JSON.stringify(["D", "gone"]),
    JSON.stringify(["W", "x.txt", "f", 0o644, 1, sha("1")]),
    JSON.stringify(["M", "y.txt", "f", 0o644, 1, sha("2")]),
  ];
  expect(h1).toBe(`sha256:${sha(lines.map((l) => `${l}\n`).join(""))}`);
});
