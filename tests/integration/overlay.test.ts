/**
 * Overlay isolation + fs diff + apply, for real (root): each "world" is a private mount + PID
 * namespace running the fixture, which mounts the overlay with mountOverlay (kernel overlay or
 * fuse-overlayfs), runs shell commands in the merged dir and unmounts. The upper dir stays on
 * disk, the test reads it like the agent does.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, chownSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { applyDiff, ApplyError, discardOverlay } from "../../agent/world/apply.ts";
import { collectChanges, overlayDiff, readMountRecord, type OverlayStrategy } from "../../agent/world/fsdiff.ts";
import { OverlayError, prepareOverlayDirs, probeFsStrategy } from "../../agent/world/overlay.ts";
import { prepareIdMapHelpers, worldIdMap } from "../../agent/world/userns.ts";
import { FsDiff, WorldFsStrategy } from "../../src/contract/index.ts";
import { manifest, mountsUnder, processesMentioning, runInOverlay, writeTree } from "./overlay-helpers.ts";

// Real mounts and thousands of files: slower than bun's 5 s default on a loaded machine.
setDefaultTimeout(120_000);

// On disk (ext4 here), like /var/lib/substrate/overlay: never tmpfs.
let tmp: string;
let base: string;
let n = 0;
const nextId = () => `wld_test_${n++}`;

const LOWER: Record<string, string> = {
  "keep.txt": "keep\n",
  "mod.txt": "mod\n",
  "del.txt": "del\n",
  "chmod.sh": "#!/bin/sh\n",
  "ren_src.txt": "ren\n",
  "olddir/a.txt": "a\n",
  "olddir/b.txt": "b\n",
  "recreate/x.txt": "x\n",
  "recreate/y.txt": "y\n",
  "deldir/p.txt": "p\n",
  "deldir/sub/q.txt": "q\n",
  typechange: "file\n",
  "src/nested/deep.txt": "deep\n",
  "perm/f.txt": "f\n",
};

const OPS = [
  "echo new > created.txt",
  "echo more >> mod.txt",
  "rm del.txt",
  "chmod 755 chmod.sh",
  "mv ren_src.txt ren_dst.txt",
  "mv olddir newdir",
  "mkdir -p fresh/inner && echo f > fresh/inner/f.txt",
  "rm -rf recreate && mkdir recreate && echo y2 > recreate/y.txt && echo z > recreate/z.txt",
  "rm -rf deldir",
  "rm typechange && mkdir typechange && echo t > typechange/t.txt",
  "ln -s keep.txt link",
  "echo d >> src/nested/deep.txt",
  "chmod 700 perm",
].join("\n");

const EXPECTED = {
  writes: [
    "created.txt",
    "fresh/",
    "fresh/inner/",
    "fresh/inner/f.txt",
    "link",
    "newdir/",
    "newdir/a.txt",
    "newdir/b.txt",
    "recreate/z.txt",
    "ren_dst.txt",
    "typechange/",
    "typechange/t.txt",
  ],
  mods: ["chmod.sh", "mod.txt", "perm/", "recreate/y.txt", "src/nested/deep.txt"],
  deletes: ["del.txt", "deldir/", "olddir/", "recreate/x.txt", "ren_src.txt", "typechange"],
};

function freshProject(name: string): string {
  const p = join(tmp, name);
  writeTree(p, LOWER, { "chmod.sh": 0o644, "perm/": 0o755 });
  return p;
}

beforeAll(() => {
  tmp = mkdtempSync("/var/tmp/substrate-overlay-test-");
  // World root under a user namespace (a mapped host uid) must traverse to the project.
  chmodSync(tmp, 0o711);
  base = join(tmp, "overlay");
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

function fuseUsable(): boolean {
  return Bun.which("fuse-overlayfs") !== null && existsSync("/dev/fuse");
}

const STRATEGIES: OverlayStrategy[] = ["overlay", ...(fuseUsable() ? (["fuse"] as const) : [])];

describe.each(STRATEGIES)("strategy %s", (strategy) => {
  test("create/modify/delete/rename/chmod/new-dir/recreated-dir/type-change all appear in the diff; host untouched", async () => {
    const project = freshProject(`proj-${strategy}`);
    const before = manifest(project);
    const w = await runInOverlay(base, nextId(), project, OPS, { strategy });
    expect(w.strategy).toBe(strategy);

    // No options: the mount record mountOverlay left next to upper/ says how to read it.
    expect(readMountRecord(w.dirs.upper)).toEqual({ strategy, userxattr: false });
    const diff = await overlayDiff(w.dirs.upper, project);
    expect(FsDiff.parse(diff)).toEqual(diff);
    expect(diff.writes).toEqual(EXPECTED.writes);
    expect(diff.mods).toEqual(EXPECTED.mods);
    expect(diff.deletes).toEqual(EXPECTED.deletes);
    expect(diff.truncated).toBeUndefined();
    expect(diff.summary).toBe("7 dirs, 16 files");
    // Writes never touched the host project.
    expect(manifest(project)).toEqual(before);
  });

  test("the project overlay is mounted nosuid,nodev", async () => {
    const project = freshProject(`flags-${strategy}`);
    const w = await runInOverlay(base, nextId(), project, `awk -v t="$PWD" '$5 == t {print $6}' /proc/self/mountinfo > opts.txt`, {
      strategy,
    });
    const opts = readFileSync(join(w.dirs.upper, "opts.txt"), "utf8").trim().split(",");
    expect(opts).toContain("nosuid");
    expect(opts).toContain("nodev");
  });

  test("apply lands exactly the diff (project == what the world saw)", async () => {
    const project = freshProject(`apply-${strategy}`);
    const seen = join(tmp, `seen-${strategy}`);
    mkdirSync(seen);
    const w = await runInOverlay(base, nextId(), project, OPS, { strategy, snapshot: seen });
    const res = await applyDiff(w.dirs.upper, project);
    expect(res.skipped).toEqual([]);
    expect(res.applied).toEqual([...EXPECTED.writes, ...EXPECTED.mods, ...EXPECTED.deletes].sort());
    expect(manifest(project)).toEqual(manifest(seen));
    // Nothing left to apply: the upper dir now matches the project (only copy-ups remain as mods).
    const again = collectChanges(w.dirs.upper, project, { strategy });
    expect(again.filter((c) => c.kind !== "mod")).toEqual([]);
    await discardOverlay(w.dirs.dir, base);
    expect(existsSync(w.dirs.dir)).toBe(false);
  });
});

test.if(fuseUsable())("auto strategy falls back to fuse-overlayfs when the kernel overlay refuses the mount", async () => {
  // A workdir on another filesystem (tmpfs) than the upperdir: the kernel refuses (EINVAL),
  // fuse-overlayfs mounts. New files work there; copy-ups would hit EXDEV, so only create.
  const project = freshProject("fallback");
  const shmWork = join("/dev/shm", `substrate-test-work-${process.pid}`);
  mkdirSync(shmWork);
  try {
    await expect(runInOverlay(base, nextId(), project, "echo n > new.txt", { strategy: "overlay", work: shmWork })).rejects.toThrow(
      /mount overlay/,
    );
    const w = await runInOverlay(base, nextId(), project, "echo n > new.txt", { work: shmWork });
    expect(w.strategy).toBe("fuse");
    expect(await overlayDiff(w.dirs.upper, project, { strategy: "fuse" })).toEqual({
      writes: ["new.txt"],
      mods: [],
      deletes: [],
      summary: "0 dirs, 1 files",
    });
  } finally {
    rmSync(shmWork, { recursive: true, force: true });
  }
});

test("apply per path lands only the selected entries; unknown paths apply nothing", async () => {
  const project = freshProject("partial");
  const original = join(tmp, "partial-orig");
  cpSync(project, original, { recursive: true });
  const w = await runInOverlay(base, nextId(), project, OPS);

  await expect(applyDiff(w.dirs.upper, project, ["created.txt", "nope.txt"])).rejects.toBeInstanceOf(ApplyError);
  expect(manifest(project)).toEqual(manifest(original));

  const res = await applyDiff(w.dirs.upper, project, ["created.txt", "fresh/inner/f.txt", "newdir/", "del.txt"]);
  expect(res.applied).toEqual(["created.txt", "del.txt", "fresh/inner/f.txt", "newdir/", "newdir/a.txt", "newdir/b.txt"]);
  const after = manifest(project);
  const expected = { ...manifest(original) };
  delete expected["del.txt"];
  expected["created.txt"] = after["created.txt"] as string;
  expected["fresh/"] = "d 755";
  expected["fresh/inner/"] = "d 755";
  expected["fresh/inner/f.txt"] = after["fresh/inner/f.txt"] as string;
  expected["newdir/"] = "d 755";
  expected["newdir/a.txt"] = expected["olddir/a.txt"] as string;
  expected["newdir/b.txt"] = expected["olddir/b.txt"] as string;
  expect(after).toEqual(expected);
  expect(after["created.txt"]).toMatch(/^f 644 /);
});

test("apply: new paths take the parent's owner, mods keep theirs, modes and mtimes land, fifos are skipped", async () => {
  const project = join(tmp, "owners");
  writeTree(project, { "mine.txt": "m\n", "sub/": "" });
  chownSync(project, 1000, 1000);
  chownSync(join(project, "sub"), 1000, 1000);
  chownSync(join(project, "mine.txt"), 1234, 1234);
  const w = await runInOverlay(
    base,
    nextId(),
    project,
    "echo new > sub/new.txt; chmod 640 sub/new.txt; touch -d 2001-02-03T04:05:06Z sub/new.txt; echo more >> mine.txt; mkfifo pipe; mkdir -m 750 d2; cp /bin/true suid; chmod 6755 suid",
  );
  const res = await applyDiff(w.dirs.upper, project);
  expect(res.applied).toEqual(["d2/", "mine.txt", "sub/new.txt", "suid"]);
  // setuid/setgid never land (the host picks the owner, possibly root).
  expect(lstatSync(join(project, "suid")).mode & 0o7777).toBe(0o755);
  expect(res.skipped).toEqual([{ path: "pipe", reason: "fifo, socket or device node: not recreated on the host" }]);
  const n = lstatSync(join(project, "sub/new.txt"));
  expect([n.uid, n.gid, n.mode & 0o7777]).toEqual([1000, 1000, 0o640]);
  expect(n.mtime.toISOString()).toBe("2001-02-03T04:05:06.000Z");
  const m = lstatSync(join(project, "mine.txt"));
  expect([m.uid, m.gid]).toEqual([1234, 1234]);
  const d = lstatSync(join(project, "d2"));
  expect([d.uid, d.mode & 0o7777]).toEqual([1000, 0o750]);
  expect(existsSync(join(project, "pipe"))).toBe(false);
});

test("apply never writes through a symlink the host planted since the command", async () => {
  const project = freshProject("symlink-guard");
  const outside = join(tmp, "outside");
  mkdirSync(outside);
  const w = await runInOverlay(base, nextId(), project, "echo x > src/nested/new.txt");
  // The host replaces src/nested with a symlink to a dir outside the project.
  rmSync(join(project, "src/nested"), { recursive: true });
  symlinkSync(outside, join(project, "src/nested"));
  // Recomputed against the project as it is now, src/nested is a type change (symlink → dir):
  // the symlink is replaced, nothing lands outside.
  const res = await applyDiff(w.dirs.upper, project);
  expect(res.applied).toEqual(["src/nested", "src/nested/", "src/nested/new.txt"]);
  expect(readdirSync(outside)).toEqual([]);
  expect(lstatSync(join(project, "src/nested")).isDirectory()).toBe(true);
});

test("names that are not valid UTF-8 neither break the diff nor get applied", async () => {
  const project = freshProject("lossy");
  const w = await runInOverlay(
    base,
    nextId(),
    project,
    `d=$(printf 'dir\\377'); mkdir "$d"; echo y > "$d/f"; echo x > "$(printf 'bad\\377name')"; echo ok > ok.txt`,
  );
  const diff = await overlayDiff(w.dirs.upper, project, { alwaysHash: true });
  expect(diff.writes).toEqual(["bad\uFFFDname", "dir\uFFFD/", "dir\uFFFD/f", "ok.txt"]);
  expect(diff.tree_hash).toMatch(/^sha256:/);
  const res = await applyDiff(w.dirs.upper, project);
  expect(res.applied).toEqual(["ok.txt"]);
  expect(res.skipped.map((s) => s.path)).toEqual(["bad\uFFFDname", "dir\uFFFD/", "dir\uFFFD/f"]);
  expect(readdirSync(project).filter((n) => n.includes("\uFFFD"))).toEqual([]);
});

test("smart truncation: ≤1000 files and ≤100 dirs listed, summary, stable tree hash", async () => {
  // 150 dirs x 10 files, plus a mod that must stay listed despite the flood of writes.
  const gen = (salt: string) =>
    `for d in $(seq 1 150); do mkdir -p gen/d$d; for f in $(seq 1 10); do echo "$d-$f${salt}" > gen/d$d/f$f; done; done; echo more >> mod.txt`;
  const p1 = freshProject("trunc1");
  const p2 = freshProject("trunc2");
  const p3 = freshProject("trunc3");
  const w1 = await runInOverlay(base, nextId(), p1, gen(""));
  const w2 = await runInOverlay(base, nextId(), p2, gen(""));
  const w3 = await runInOverlay(base, nextId(), p3, gen("!"));
  const d1 = await overlayDiff(w1.dirs.upper, p1);
  const d2 = await overlayDiff(w2.dirs.upper, p2);
  const d3 = await overlayDiff(w3.dirs.upper, p3);

  expect(FsDiff.parse(d1)).toEqual(d1);
  expect(d1.truncated).toBe(true);
  expect(d1.summary).toBe("151 dirs, 1501 files (truncated, see tree_hash)");
  const listed = [...d1.writes, ...d1.mods, ...d1.deletes];
  expect(listed.filter((p) => p.endsWith("/")).length).toBe(100);
  expect(listed.filter((p) => !p.endsWith("/")).length).toBe(1000);
  expect(d1.mods).toEqual(["mod.txt"]);
  expect(d1.writes).toContain("gen/");
  expect(d1.tree_hash).toMatch(/^sha256:[0-9a-f]{64}$/);
  // Same content in another world (other inode order, other mtimes) → same hash; different → different.
  expect(d2.tree_hash).toBe(d1.tree_hash as string);
  expect(d3.tree_hash).not.toBe(d1.tree_hash as string);
  expect(d3.summary).toBe(d1.summary as string);

  // Below the limits nothing is truncated and no hash unless asked.
  const small = await overlayDiff(w1.dirs.upper, p1, { maxFiles: 5000, maxDirs: 500 });
  expect(small.truncated).toBeUndefined();
  expect(small.tree_hash).toBeUndefined();
  expect(small.writes.length + small.mods.length).toBe(1652);
  const hashed = await overlayDiff(w1.dirs.upper, p1, { maxFiles: 5000, maxDirs: 500, alwaysHash: true });
  expect(hashed.tree_hash).toBe(d1.tree_hash as string);
});

test("userxattr: opaque dirs and whiteouts read from user.overlay.*", async () => {
  const project = freshProject("userxattr");
  const w = await runInOverlay(base, nextId(), project, OPS, { strategy: "overlay", userxattr: true });
  expect(readMountRecord(w.dirs.upper)).toEqual({ strategy: "overlay", userxattr: true });
  const diff = await overlayDiff(w.dirs.upper, project);
  expect(diff.writes).toEqual(EXPECTED.writes);
  expect(diff.mods).toEqual(EXPECTED.mods);
  expect(diff.deletes).toEqual(EXPECTED.deletes);
  // Read with the wrong namespace, the opaque marker is invisible: the recreated dir's old
  // content is then (wrongly) considered still visible. Proves the test can fail.
  const wrong = await overlayDiff(w.dirs.upper, project, { strategy: "overlay", userxattr: false });
  expect(wrong.deletes).not.toContain("recreate/x.txt");
});

test("in a real user namespace (world root = project owner): userxattr overlay, diff, apply", async () => {
  const project = freshProject("userns");
  Bun.spawnSync(["chown", "-R", "1000:1000", project]);
  const map = worldIdMap(project);
  expect([map.rootUid, map.rootGid]).toEqual([1000, 1000]);
  const h = prepareIdMapHelpers(join(tmp, "idmap"), map);
  try {
    // userxattr not passed: mountOverlay detects the user namespace itself.
    const w = await runInOverlay(base, nextId(), project, `${OPS}\ntest "$(id -u)" = 0`, {
      strategy: "overlay",
      userns: { unshareArgs: h.unshareArgs, PATH: h.env.PATH, owner: { uid: map.rootUid, gid: map.rootGid } },
    });
    expect(readMountRecord(w.dirs.upper)).toEqual({ strategy: "overlay", userxattr: true });
    const diff = await overlayDiff(w.dirs.upper, project);
    expect(diff.writes).toEqual(EXPECTED.writes);
    expect(diff.mods).toEqual(EXPECTED.mods);
    expect(diff.deletes).toEqual(EXPECTED.deletes);
    // What world root created belongs to the project owner on the host.
    expect(lstatSync(join(w.dirs.upper, "created.txt")).uid).toBe(1000);
    const res = await applyDiff(w.dirs.upper, project);
    expect(res.applied.length).toBe(EXPECTED.writes.length + EXPECTED.mods.length + EXPECTED.deletes.length);
    expect(lstatSync(join(project, "fresh/inner/f.txt")).uid).toBe(1000);
  } finally {
    h.remove();
  }
});

test("enumeration_v1 probe passes for each available strategy and reports the DS0 block", async () => {
  for (const s of STRATEGIES) {
    const r = await probeFsStrategy({ baseDir: join(tmp, "probe"), strategies: [s] });
    expect(WorldFsStrategy.parse(r.world_fs_strategy)).toEqual({
      primary: "overlay",
      fallback: "fuse",
      probe: { id: "enumeration_v1", probe_file: ".substrate_enum_probe", result: "pass", failure_reason: null },
    });
    expect(r.active).toBe(s);
  }
  const none = await probeFsStrategy({ baseDir: join(tmp, "probe"), strategies: [] });
  expect(none.world_fs_strategy.probe.result).toBe("fail");
  expect(none.world_fs_strategy.probe.failure_reason).toBe("no strategy probed");
  expect(readdirSync(join(tmp, "probe"))).toEqual([]);
  // A base on tmpfs is a probe failure (worlds could not use it), reported, not thrown.
  const shm = join("/dev/shm", `substrate-probe-${process.pid}`);
  try {
    const r = await probeFsStrategy({ baseDir: shm });
    expect(r.world_fs_strategy.probe.result).toBe("fail");
    expect(r.world_fs_strategy.probe.failure_reason).toMatch(/tmpfs/);
    expect(r.active).toBeNull();
  } finally {
    rmSync(shm, { recursive: true, force: true });
  }
});

test("prepareOverlayDirs: on-disk layout, refuses tmpfs and unsafe ids; discard stays under base", async () => {
  const d = prepareOverlayDirs("wld_layout", base);
  expect(d).toEqual({ dir: join(base, "wld_layout"), upper: join(base, "wld_layout/upper"), work: join(base, "wld_layout/work") });
  expect(statSync(d.dir).mode & 0o777).toBe(0o700);
  expect(() => prepareOverlayDirs("../evil", base)).toThrow(OverlayError);
  const shm = join("/dev/shm", `substrate-test-${process.pid}`);
  try {
    expect(() => prepareOverlayDirs("wld_x", shm)).toThrow(/tmpfs/);
  } finally {
    rmSync(shm, { recursive: true, force: true });
  }
  await expect(discardOverlay(tmp, base)).rejects.toBeInstanceOf(ApplyError);
  await discardOverlay(d.dir, base);
  expect(existsSync(d.dir)).toBe(false);
});

test("nothing left mounted and no fuse daemon left behind", () => {
  expect(mountsUnder(tmp)).toEqual([]);
  expect(processesMentioning(tmp)).toEqual([]);
});
