/**
 * IsolatedResults (what the /v1/fs_diff/:span_id routes serve) over a real overlay run:
 * diff by span, apply with a bad path (bad_request, nothing applied), apply per path, survive an
 * "agent restart" (new instance finds the result on disk), discard (then not_found).
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync } from "node:fs";
import { gcOverlayDirs } from "../../agent/world/apply.ts";
import { prepareOverlayDirs } from "../../agent/world/overlay.ts";
import { join } from "node:path";
import { IsolatedResults } from "../../agent/world/isolated_results.ts";
import { ApiError } from "../../src/api/service.ts";
import { FsApplyResponse, FsDiffResponse, newSpanId, newWorldId } from "../../src/contract/index.ts";
import { manifest, mountsUnder, runInOverlay, writeTree } from "./overlay-helpers.ts";
import { runnable, runnableBun } from "../helpers/runnable.ts";

// Real mounts and thousands of files: slower than bun's 5 s default on a loaded machine.
setDefaultTimeout(120_000);

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync("/var/tmp/substrate-results-test-");
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const code = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
    return "resolved";
  } catch (e) {
    return e instanceof ApiError ? e.code : `other: ${(e as Error).message}`;
  }
};

test("diff / apply / restart / discard by span id", async () => {
  const base = join(tmp, "overlay");
  const project = join(tmp, "project");
  writeTree(project, { "a.txt": "a\n", "b.txt": "b\n" });
  const before = manifest(project);
  const worldId = newWorldId();
  const spanId = newSpanId();
  const w = await runInOverlay(base, worldId, project, "echo A > a.txt; echo c > c.txt; rm b.txt");

  const results = new IsolatedResults(base);
  results.register(w.dirs.dir, { span_id: spanId, world_id: worldId, project_dir: project });
  const diff = FsDiffResponse.parse(await results.diff(spanId));
  expect(diff).toEqual({ writes: ["c.txt"], mods: ["a.txt"], deletes: ["b.txt"], summary: "0 dirs, 3 files" });
  expect(manifest(project)).toEqual(before);

  expect(await code(results.diff(newSpanId()))).toBe("not_found");
  expect(await code(results.apply(spanId, ["nope.txt"]))).toBe("bad_request");
  expect(manifest(project)).toEqual(before);

  const applied = FsApplyResponse.parse(await results.apply(spanId, ["c.txt"]));
  expect(applied).toEqual({ applied: ["c.txt"], skipped: [] });
  expect(readFileSync(join(project, "c.txt"), "utf8")).toBe("c\n");
  expect(readFileSync(join(project, "a.txt"), "utf8")).toBe("a\n");

  // A fresh instance (agent restart) finds the result through result.json; the diff is
  // recomputed against the project as it is now (c.txt exists there now: a mod).
  const again = new IsolatedResults(base);
  expect(await again.diff(spanId)).toEqual({ writes: [], mods: ["a.txt", "c.txt"], deletes: ["b.txt"], summary: "0 dirs, 3 files" });
  expect(await again.discard(spanId)).toEqual({ discarded: true });
  expect(existsSync(w.dirs.dir)).toBe(false);
  expect(await code(again.diff(spanId))).toBe("not_found");
  expect(await code(results.apply(spanId))).toBe("not_found");
  expect(mountsUnder(tmp)).toEqual([]);
});

test("gcOverlayDirs removes old unkept overlay dirs only", () => {
  const base = join(tmp, "gc");
  const now = Date.now();
  for (const n of ["wld_old", "wld_kept", "wld_new", "probe-old"]) prepareOverlayDirs(n, base);
  const old = new Date(now - 3_600_000);
  for (const n of ["wld_old", "wld_kept", "probe-old"]) utimesSync(join(base, n), old, old);
  expect(gcOverlayDirs({ baseDir: base, olderThanMs: 600_000, keep: ["wld_kept"], now })).toEqual(["probe-old", "wld_old"]);
  expect(readdirSync(base).sort()).toEqual(["wld_kept", "wld_new"]);
  expect(gcOverlayDirs({ baseDir: join(tmp, "missing"), olderThanMs: 0 })).toEqual([]);
});

test("discardOverlay works for an unprivileged (rootless) agent despite mode-000 dirs", () => {
  // The kernel leaves work/work at 000; root ignores it, a rootless agent must chmod first.
  const d = mkdtempSync("/var/tmp/substrate-rootless-discard-");
  try {
    const base = join(d, "base");
    mkdirSync(join(base, "wld_x/work/work/sub"), { recursive: true });
    mkdirSync(join(base, "wld_x/upper"));
    chmodSync(join(base, "wld_x/work/work"), 0o000);
    Bun.spawnSync(["chown", "-R", "nobody:nogroup", d]);
    chmodSync(d, 0o755);
    const apply = runnable(join(import.meta.dir, "../../agent/world/apply.ts"), false); // issue 18 1b: nobody must reach it
    const script = `const { discardOverlay } = await import(${JSON.stringify(apply)}); const [dir, base] = process.argv.slice(-2); await discardOverlay(dir, base);`;
    const r = Bun.spawnSync(
      ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", runnableBun(), "-e", script, join(base, "wld_x"), base],
      { stderr: "pipe" },
    );
    expect(r.stderr.toString()).toBe("");
    expect(r.exitCode).toBe(0);
    expect(existsSync(join(base, "wld_x"))).toBe(false);
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});
