/**
 * Lands an isolated world's result on the host project (apply), or throws it away (discard).
 *
 * applyDiff recomputes the full, untruncated change list from the upper dir against the
 * project as it is NOW (collectChanges), so it lands exactly what the diff shows, never the
 * truncated listing. Order: deletes (deepest first), then dirs (shallowest first), then files
 * and symlinks. Each file is copied to a temp name in its target dir and renamed over the
 * old one: a reader of the project never sees a half-written file.
 *
 * Decisions (docs/FS_DIFF.md):
 * - Mode (minus setuid/setgid on files) and mtime come from the upper entry. Owner: a modified path keeps its current owner;
 *   a new path takes its parent dir's owner (the agent runs as root; the user's project must
 *   not fill up with root-owned files, nor with a user namespace's mapped ids).
 * - `paths` selects entries by their diff path: "a/b.txt" exactly, "dir/" = the dir entry and
 *   everything under it. Missing parent dirs of a selected entry are created (mode from the
 *   upper dir). A path matching nothing is an error (nothing is applied).
 * - Fifos, sockets and device nodes are not recreated on the host: reported in `skipped`, as
 *   are entries whose name is not valid UTF-8 (the diff shows them lossily; they cannot be
 *   selected by path, and landing bytes the user never saw is not what apply is for).
 * - Apply after the world is gone (or at least idle): changing an overlay's lower layer under
 *   a live mount is undefined behaviour in overlayfs. Last writer wins: host edits made since
 *   the command are overwritten for the applied paths (no 3-way merge).
 * - No write goes through a symlink: each target's parent must resolve to itself inside the
 *   project (a world cannot plant `link -> /etc` and then write `link/passwd`, and neither
 *   can a host-side symlink created since).
 */
import {
  existsSync,
  chmodSync,
  copyFileSync,
  constants,
  lchownSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
} from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { collectChanges, compareUtf8, type Change, type FsPath, type MarkerOptions } from "./fsdiff.ts";
import { OVERLAY_BASE } from "./overlay.ts";

export class ApplyError extends Error {
  constructor(
    message: string,
    readonly code: "unknown_paths" | "unsafe_path" | "io",
    readonly paths: string[] = [],
  ) {
    super(message);
    this.name = "ApplyError";
  }
}

export interface ApplyResult {
  /** Diff paths landed on the project, sorted. */
  applied: string[];
  /** Entries not applied (fifos, sockets, devices), with why. */
  skipped: { path: string; reason: string }[];
}

/**
 * Issue 18 faults (RELIABILITY): what an apply tells its journal (isolated_results.ts), so an
 * apply killed half way can be finished and reported: each temp file before it is created,
 * each diff path once it landed.
 */
export interface ApplyJournal {
  /** before the temp file for diff path `path` exists */
  tmp(abs: string, path?: string): void;
  landed(path: string): void;
}
export type ApplyOptions = MarkerOptions & { journal?: ApplyJournal };

const depth = (p: string): number => p.split("/").length;
const strip = (p: string): string => (p.endsWith("/") ? p.slice(0, -1) : p);

function select(all: Change[], paths: string[] | undefined): Change[] {
  if (paths === undefined) return all;
  const unknown: string[] = [];
  const chosen = new Set<Change>();
  for (const p of paths) {
    let hit = false;
    for (const c of all) {
      if (c.path === p || (p.endsWith("/") && c.path.startsWith(p))) {
        chosen.add(c);
        hit = true;
      }
    }
    if (!hit) unknown.push(p);
  }
  if (unknown.length > 0) {
    throw new ApplyError(
      `not in this diff: ${unknown.map((u) => JSON.stringify(u)).join(", ")} (use the paths of the fs diff; directories end with "/")`,
      "unknown_paths",
      unknown,
    );
  }
  return all.filter((c) => chosen.has(c));
}

/**
 * Applies the world's changes (all, or the entries selected by `paths`) to `projectDir`.
 * `opts` must match how the overlay was mounted (strategy, userxattr).
 */
export async function applyDiff(
  upperDir: string,
  projectDir: string,
  paths?: string[],
  opts: ApplyOptions = {},
): Promise<ApplyResult> {
  const project = realpathSync(projectDir);
  const all = collectChanges(upperDir, project, opts);
  const chosen = select(all, paths);

  const deletes = chosen.filter((c) => c.kind === "delete").sort((a, b) => depth(b.path) - depth(a.path));
  const dirs = chosen
    .filter((c) => c.kind !== "delete" && c.type === "dir")
    .sort((a, b) => depth(a.path) - depth(b.path) || compareUtf8(a.path, b.path));
  const leaves = chosen.filter((c) => c.kind !== "delete" && c.type !== "dir");

  const applied: string[] = [];
  const skipped: ApplyResult["skipped"] = [];
  const target = (c: Change): string => join(project, strip(c.path));

  for (const c of chosen) {
    if (c.lossy) skipped.push({ path: c.path, reason: "name is not valid UTF-8: rename it to apply" });
  }
  for (const c of deletes) {
    if (c.lossy) continue;
    const t = target(c);
    if (ownerOf(t) !== null) {
      assertInside(project, dirname(t));
      rmSync(t, { recursive: true, force: true });
    }
    applied.push(c.path);
    opts.journal?.landed(c.path);
  }
  for (const c of dirs) {
    if (c.lossy) continue;
    ensureParents(project, upperDir, strip(c.path));
    landDir(project, c.upper as FsPath, target(c));
    applied.push(c.path);
    opts.journal?.landed(c.path);
  }
  for (const c of leaves) {
    if (c.lossy) continue;
    if (c.type === "other") {
      skipped.push({ path: c.path, reason: "fifo, socket or device node: not recreated on the host" });
      continue;
    }
    ensureParents(project, upperDir, c.path);
    if (c.type === "symlink") landSymlink(c.upper as FsPath, target(c), opts.journal, c.path);
    else landFile(c.upper as FsPath, target(c), opts.journal, c.path);
    applied.push(c.path);
    opts.journal?.landed(c.path);
  }
  applied.sort(compareUtf8);
  skipped.sort((a, b) => compareUtf8(a.path, b.path));
  return { applied, skipped };
}

/** The parent of every write must be the real directory at that path inside the project. */
function assertInside(project: string, dir: string): void {
  let real: string;
  try {
    real = realpathSync(dir);
  } catch (e) {
    throw new ApplyError(`cannot resolve ${dir}: ${(e as Error).message}`, "io", [relative(project, dir)]);
  }
  const want = resolve(dir);
  if (real !== want || !(real === project || real.startsWith(project + sep))) {
    throw new ApplyError(
      `refusing to write through a symlink: ${want} resolves to ${real}`,
      "unsafe_path",
      [relative(project, dir)],
    );
  }
}

/** Creates missing parent dirs of `rel` (mode from the upper dir, owner from their parent). */
function ensureParents(project: string, upper: string, rel: string): void {
  const parts = rel.split("/").slice(0, -1);
  let cur = project;
  let curUpper = upper;
  for (const p of parts) {
    cur = join(cur, p);
    curUpper = join(curUpper, p);
    let st;
    try {
      st = lstatSync(cur);
    } catch {
      st = null;
    }
    if (st === null) {
      const mode = lstatSync(curUpper).mode & 0o7777;
      mkdirSync(cur, { mode });
      chmodSync(cur, mode); // mkdir's mode is filtered by the umask
      inheritOwner(cur);
    } else if (!st.isDirectory()) {
      throw new ApplyError(`${cur} is not a directory (it changed on the host since the command ran)`, "unsafe_path", [
        relative(project, cur),
      ]);
    }
  }
  assertInside(project, cur);
}

function inheritOwner(path: string): void {
  const parent = lstatSync(dirname(path));
  lchownSync(path, parent.uid, parent.gid);
}

function landDir(project: string, upperAbs: FsPath, dst: string): void {
  const st = lstatSync(upperAbs);
  let cur;
  try {
    cur = lstatSync(dst);
  } catch {
    cur = null;
  }
  if (cur !== null && !cur.isDirectory()) rmSync(dst, { force: true });
  if (cur === null || !cur.isDirectory()) {
    mkdirSync(dst);
    inheritOwner(dst);
  }
  chmodSync(dst, st.mode & 0o7777);
  assertInside(project, dst);
}

/**
 * setuid/setgid bits are dropped from applied files: the owner is chosen on the host (it can
 * be root for a root-owned project), so keeping them would let a world plant a setuid-root
 * binary in the project. Sticky and permission bits are kept.
 */
const FILE_MODE_MASK = 0o1777;

const tmpName = (dst: string): string => join(dirname(dst), `.substrate-apply-${process.pid}-${Bun.randomUUIDv7()}`);

function landFile(upperAbs: FsPath, dst: string, journal?: ApplyJournal, path?: string): void {
  const st = lstatSync(upperAbs);
  const old = ownerOf(dst);
  const tmp = tmpName(dst);
  journal?.tmp(tmp, path);
  try {
    // COPYFILE_FICLONE: reflink where the filesystem can, plain copy otherwise.
    copyFileSync(upperAbs, tmp, constants.COPYFILE_FICLONE);
    // Owner first, then the mode (0600 until then: no window where others can read it).
    chmodSync(tmp, 0o600);
    if (old !== null) lchownSync(tmp, old.uid, old.gid);
    else inheritOwner(tmp);
    chmodSync(tmp, st.mode & FILE_MODE_MASK);
    utimesSync(tmp, st.atime, st.mtime);
    clearDirAt(dst);
    renameSync(tmp, dst);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

function landSymlink(upperAbs: FsPath, dst: string, journal?: ApplyJournal, path?: string): void {
  const st = lstatSync(upperAbs);
  const old = ownerOf(dst);
  const tmp = tmpName(dst);
  journal?.tmp(tmp, path);
  try {
    symlinkSync(readlinkSync(upperAbs), tmp);
    if (old !== null) lchownSync(tmp, old.uid, old.gid);
    else inheritOwner(tmp);
    lutimesSync(tmp, st.atime, st.mtime);
    clearDirAt(dst);
    renameSync(tmp, dst);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {}
    throw e;
  }
}

/** rename(2) cannot replace a directory with a file: a dir there (type change) goes first. */
function clearDirAt(dst: string): void {
  try {
    if (lstatSync(dst).isDirectory()) rmSync(dst, { recursive: true, force: true });
  } catch {}
}

function ownerOf(path: string): { uid: number; gid: number } | null {
  try {
    const st = lstatSync(path);
    return { uid: st.uid, gid: st.gid };
  } catch {
    return null;
  }
}

/**
 * Removes an overlay dir (`<base>/<world_id>` with upper/ and work/) once its world is gone.
 * Refuses anything outside `baseDir`. Idempotent.
 */
export async function discardOverlay(dir: string, baseDir: string = OVERLAY_BASE): Promise<void> {
  const base = resolve(baseDir);
  const d = resolve(dir);
  if (dirname(d) !== base) {
    throw new ApplyError(`refusing to remove ${d}: not an overlay dir directly under ${base}`, "unsafe_path", [d]);
  }
  removeTree(d);
}

/**
 * rm -rf that also works without root: the kernel leaves `work/work` at mode 000 and a world
 * may chmod its own dirs to 000; root ignores that, an unprivileged (rootless) agent does not.
 * On EACCES, give every dir u+rwx (lstat: symlinks are never followed) and retry once.
 */
function removeTree(d: string): void {
  try {
    rmSync(d, { recursive: true, force: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EACCES" && (e as NodeJS.ErrnoException).code !== "EPERM") throw e;
    const open = (p: string): void => {
      try {
        if (!lstatSync(p).isDirectory()) return;
        chmodSync(p, 0o700);
        for (const n of readdirSync(p)) open(join(p, n));
      } catch {}
    };
    open(d);
    rmSync(d, { recursive: true, force: true });
  }
}

/**
 * Garbage-collects overlay dirs under `baseDir`: results never applied nor discarded, dirs of
 * worlds that died before registering, and leftover `probe-*` dirs. Removes those whose
 * directory mtime is older than `olderThanMs`, except the ids in `keep` (live worlds and
 * results the caller still wants). Returns the removed names, sorted. Call it with the world
 * manager's live ids, never while a listed world might still be mounting.
 */
export function gcOverlayDirs(opts: {
  baseDir?: string;
  olderThanMs: number;
  keep?: Iterable<string>;
  now?: number;
  /**
   * Issue 18 faults (RELIABILITY): also remove, whatever their age, dirs that hold no result
   * record (`orphans.record`, e.g. result.json): an isolated world that never registered its
   * result — the previous agent died mid-run. Only when no world of this base can be alive
   * (the agent's start, once it owns its socket).
   */
  orphans?: { record: string };
}): string[] {
  const base = resolve(opts.baseDir ?? OVERLAY_BASE);
  const keep = new Set(opts.keep ?? []);
  const cutoff = (opts.now ?? Date.now()) - opts.olderThanMs;
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (keep.has(name)) continue;
    const d = join(base, name);
    let st;
    try {
      st = lstatSync(d);
    } catch {
      continue;
    }
    if (!st.isDirectory()) continue;
    const orphan = opts.orphans !== undefined && !existsSync(join(d, opts.orphans.record));
    if (!orphan && st.mtimeMs > cutoff) continue;
    removeTree(d);
    removed.push(name);
  }
  return removed.sort();
}
