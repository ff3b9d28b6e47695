/**
 * Turns an overlay upper dir into the spec's `FsDiff {writes, mods, deletes}` with smart
 * truncation (at most 1000 files and 100 dirs listed, then `truncated`, `tree_hash`, `summary`).
 * Semantics and the tree hash are defined in docs/FS_DIFF.md; keep the two in step.
 *
 * The diff is the difference between the lower tree (the host project) and the merged tree the
 * world saw, read from the upper dir only where possible:
 * - upper entry, no lower entry           → write (dirs end with "/" and their contents follow)
 * - upper non-dir over a lower non-dir    → mod (any copy-up: content, chmod, chown, touch)
 * - upper dir over a lower dir            → recurse; "d/" is a mod only if mode/owner changed
 * - whiteout (0/0 char device, xwhiteout) → delete ("d/" for a directory: recursive)
 * - opaque dir (rm -rf d; mkdir d)        → lower children absent from the upper dir are deletes
 * - type change (file → dir or back)      → delete of the old + write of the new ("x" vs "x/")
 * - rename (redirect_dir=off)             → the kernel copies up + whiteouts: delete + write
 *
 * Speed: one readdir (withFileTypes) per upper dir, one readdir per lower dir that also exists
 * in the upper dir (names looked up in a Map, not lstat per file), lstat only for char devices
 * (whiteout check) and dirs present in both layers, one lgetxattr (ffi) per upper dir. A new
 * subtree (node_modules) costs one readdir per dir and nothing per file. Content is read only
 * for the tree hash, i.e. when truncating.
 *
 * Trust: the upper dir is written by the world. Only the xattr namespace the mount used is
 * honoured (overlayfs refuses to let the world set its own `trusted.overlay.*`/`user.overlay.*`
 * through the merged view), symlinks are never followed, and names are taken verbatim.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, readlinkSync, readSync, type Dirent, type Stats } from "node:fs";
import { readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { OverlayMountRecord } from "../../src/contract/fsdiff.ts";
import type { FsDiff } from "../../src/contract/world.ts";
import { lgetxattrString } from "../../src/sys/xattr.ts";

export const MAX_FILE_LIST = 1000;
export const MAX_TRACKED_DIRS = 100;

export type OverlayStrategy = "overlay" | "fuse";

export interface OverlayDiffOptions {
  /** Files (non-dir entries) listed before truncating. Spec: 1000. */
  maxFiles?: number;
  /** Dirs (entries ending in "/") listed before truncating. Spec: 100. */
  maxDirs?: number;
  /** Who wrote the upper dir: decides which whiteout/opaque markers are honoured. */
  strategy?: OverlayStrategy;
  /** The kernel overlay was mounted with `userxattr` (user namespace): `user.overlay.*`. */
  userxattr?: boolean;
  /** Also compute tree_hash when not truncated (replay wants it for every span). */
  alwaysHash?: boolean;
}

export type ChangeKind = "write" | "mod" | "delete";
export type EntryType = "file" | "dir" | "symlink" | "other";

/** A path as the fs calls take it: a Buffer only when a component is not valid UTF-8. */
export type FsPath = string | Buffer;

/** One changed path. `path` is relative to the project; directories end with "/". */
export interface Change {
  kind: ChangeKind;
  path: string;
  /** Type in the merged tree (writes/mods) or in the lower tree (deletes). */
  type: EntryType;
  /** Absolute path of the entry in the upper dir (writes and mods only). */
  upper?: FsPath;
  /**
   * A component of the name is not valid UTF-8: `path` shows it with U+FFFD (lossy), `upper`
   * holds the exact bytes. applyDiff skips such entries (they cannot be named in the API).
   */
  lossy?: true;
}

export interface MarkerOptions {
  strategy?: OverlayStrategy;
  userxattr?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Upper-dir walk

type RawType = EntryType | "chardev";
interface Ent {
  /** Display name (UTF-8; U+FFFD for invalid bytes). */
  name: string;
  /** Exact bytes when `name` is lossy, else null. */
  raw: Buffer | null;
  type: RawType;
}
type LowerIndex = Map<string, Ent>;

const SLASH = Buffer.from("/");
const direntType = (d: Dirent): RawType =>
  d.isDirectory()
    ? "dir"
    : d.isFile()
      ? "file"
      : d.isSymbolicLink()
        ? "symlink"
        : d.isCharacterDevice()
          ? "chardev"
          : "other";
const statType = (st: Stats): RawType =>
  st.isDirectory() ? "dir" : st.isFile() ? "file" : st.isSymbolicLink() ? "symlink" : st.isCharacterDevice() ? "chardev" : "other";
const publicType = (t: RawType): EntryType => (t === "chardev" ? "other" : t);

function childPath(parent: FsPath, e: Ent): FsPath {
  if (typeof parent === "string" && e.raw === null) return `${parent}/${e.name}`;
  return Buffer.concat([typeof parent === "string" ? Buffer.from(parent) : parent, SLASH, e.raw ?? Buffer.from(e.name)]);
}

/**
 * readdir with types. Fast path: string names. A name that is not valid UTF-8 comes back with
 * U+FFFD and cannot be opened by that string (a world could otherwise break the whole diff with
 * one such name): then the dir is re-read as bytes (Bun 1.4.4 ignores withFileTypes with
 * encoding "buffer", so types come from lstat on that rare path).
 */
function listDir(dir: FsPath): Ent[] {
  if (typeof dir === "string") {
    const ents = readdirSync(dir, { withFileTypes: true });
    let lossy = false;
    for (const d of ents) if (d.name.includes("\uFFFD")) lossy = true;
    if (!lossy) return ents.map((d) => ({ name: d.name, raw: null, type: direntType(d) }));
  }
  return (readdirSync(dir, { encoding: "buffer" }) as Buffer[]).map((b) => {
    const name = b.toString("utf8");
    const e: Ent = { name, raw: Buffer.from(name).equals(b) ? null : b, type: "other" };
    e.type = statType(lstatSync(childPath(dir, e)));
    return e;
  });
}

function readLower(dir: FsPath): LowerIndex {
  const m: LowerIndex = new Map();
  let ents: Ent[];
  try {
    ents = listDir(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return m;
    throw e;
  }
  for (const d of ents) m.set(d.name, d);
  return m;
}

const slash = (path: string, t: EntryType): string => (t === "dir" ? `${path}/` : path);

interface Markers {
  opaque: (dirAbs: FsPath) => "y" | "x" | null;
  /** The xattr marking a regular file as a whiteout (kernel ≥ 6.7 "xwhiteout"), or null. */
  whiteoutXattr: string | null;
  fuse: boolean;
}

function markers(o: MarkerOptions): Markers {
  const fuse = o.strategy === "fuse";
  // Kernel overlay: exactly one namespace, the one the mount used. fuse-overlayfs as root uses
  // trusted.overlay.opaque, unprivileged user.fuseoverlayfs.opaque (plus .wh..wh..opq files).
  const names = fuse
    ? ["trusted.overlay.opaque", "user.fuseoverlayfs.opaque"]
    : [o.userxattr ? "user.overlay.opaque" : "trusted.overlay.opaque"];
  return {
    fuse,
    whiteoutXattr: fuse ? null : o.userxattr ? "user.overlay.whiteout" : "trusted.overlay.whiteout",
    opaque(dirAbs) {
      for (const n of names) {
        const v = lgetxattrString(dirAbs, n);
        if (v === "y") return "y";
        // "x": the dir may hold xwhiteouts but is NOT opaque (kernel ≥ 6.7).
        if (v === "x") return "x";
      }
      return null;
    },
  };
}

const FUSE_OPAQUE_FILE = ".wh..wh..opq";
const WH_PREFIX = ".wh.";

export const MOUNT_RECORD = "mount.json";

/** Records how `upper` was mounted, in `<dir>/mount.json` (only for `<dir>/upper` layouts). */
export function writeMountRecord(upper: string, rec: OverlayMountRecord): void {
  if (basename(upper) !== "upper") return;
  writeFileSync(join(dirname(upper), MOUNT_RECORD), `${JSON.stringify(OverlayMountRecord.parse(rec))}\n`);
}

/** The mount record next to `upper`, or null (absent or unreadable: defaults apply). */
export function readMountRecord(upper: string): OverlayMountRecord | null {
  try {
    const r = OverlayMountRecord.safeParse(JSON.parse(readFileSync(join(dirname(upper), MOUNT_RECORD), "utf8")));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

/** Explicit options win; otherwise the mount record; otherwise kernel overlay, trusted.*. */
function markerOptions(upper: string, o: MarkerOptions): MarkerOptions {
  if (o.strategy !== undefined && o.userxattr !== undefined) return o;
  const rec = readMountRecord(upper);
  return { strategy: o.strategy ?? rec?.strategy, userxattr: o.userxattr ?? rec?.userxattr };
}

/**
 * The full, untruncated list of changes between `lowerDir` and the merged view recorded in
 * `upperDir`, in walk order (callers sort). Shared by overlayDiff and applyDiff. Marker
 * options default to the mount record mountOverlay left next to the upper dir.
 */
export function collectChanges(upperDir: string, lowerDir: string, o: MarkerOptions = {}): Change[] {
  const mk = markers(markerOptions(upperDir, o));
  const out: Change[] = [];
  walk(upperDir, lowerDir, "", false, false, mk, out);
  return out;
}

/**
 * @param lower  the lower dir at the same relative path, or null when there is none
 * @param hidden true when the lower dir is hidden (this dir or an ancestor is opaque): lower
 *               children missing from the upper dir are then deletes
 * @param lossy  an ancestor's name is not valid UTF-8
 */
function walk(
  upper: FsPath,
  lower: FsPath | null,
  rel: string,
  hidden: boolean,
  lossy: boolean,
  mk: Markers,
  out: Change[],
): void {
  const ents = listDir(upper);
  const lowerIdx = lower === null ? null : readLower(lower);
  let isHidden = hidden;
  let hasXwhiteouts = false;
  if (lower !== null && rel !== "") {
    // Opaque/xwhiteout flags only matter where a lower dir exists (never for the root).
    const op = mk.opaque(upper);
    if (op === "y") isHidden = true;
    if (op === "x") hasXwhiteouts = true;
  }
  if (mk.fuse && !isHidden) for (const d of ents) if (d.name === FUSE_OPAQUE_FILE) isHidden = true;

  // Names present in the merged view at this level (for the opaque-delete pass).
  const seen = isHidden && lowerIdx !== null ? new Set<string>() : null;
  const push = (c: Change, l: boolean) => out.push(l ? { ...c, lossy: true } : c);

  for (const d of ents) {
    const abs = childPath(upper, d);
    const l = lossy || d.raw !== null;
    // fuse-overlayfs bookkeeping names: `.wh..wh..opq` (opaque marker), `.wh..opq` (its own
    // 0/0 device), `.wh.<name>` (whiteout when mknod is not permitted).
    if (mk.fuse && d.name.startsWith(WH_PREFIX)) {
      if (d.name === FUSE_OPAQUE_FILE || d.name === ".wh..opq") continue;
      const name = d.name.slice(WH_PREFIX.length);
      whiteout(name, rel, lowerIdx, l, out);
      seen?.add(name);
      continue;
    }
    if (d.type === "chardev") {
      if (lstatSync(abs).rdev === 0) {
        whiteout(d.name, rel, lowerIdx, l, out);
        seen?.add(d.name);
        continue;
      }
    } else if (hasXwhiteouts && d.type === "file" && mk.whiteoutXattr !== null && lgetxattrString(abs, mk.whiteoutXattr) !== null) {
      whiteout(d.name, rel, lowerIdx, l, out);
      seen?.add(d.name);
      continue;
    }
    seen?.add(d.name);
    const t = publicType(d.type);
    const le = lowerIdx?.get(d.name);
    const lt = le === undefined ? undefined : publicType(le.type);
    const path = rel + d.name;
    if (t === "dir") {
      if (le === undefined || lt === undefined) {
        push({ kind: "write", path: `${path}/`, type: "dir", upper: abs }, l);
        walk(abs, null, `${path}/`, false, l, mk, out);
      } else if (lt !== "dir") {
        push({ kind: "delete", path, type: lt }, l || le.raw !== null);
        push({ kind: "write", path: `${path}/`, type: "dir", upper: abs }, l);
        walk(abs, null, `${path}/`, false, l, mk, out);
      } else {
        const lowerAbs = childPath(lower as FsPath, le);
        if (dirMetaChanged(abs, lowerAbs)) push({ kind: "mod", path: `${path}/`, type: "dir", upper: abs }, l);
        walk(abs, lowerAbs, `${path}/`, isHidden, l || le.raw !== null, mk, out);
      }
    } else if (lt === undefined) {
      push({ kind: "write", path, type: t, upper: abs }, l);
    } else if (lt === "dir") {
      push({ kind: "delete", path: `${path}/`, type: "dir" }, l);
      push({ kind: "write", path, type: t, upper: abs }, l);
    } else {
      push({ kind: "mod", path, type: t, upper: abs }, l);
    }
  }

  if (seen !== null && lowerIdx !== null) {
    for (const [name, le] of lowerIdx) {
      if (seen.has(name)) continue;
      const lt = publicType(le.type);
      push({ kind: "delete", path: slash(rel + name, lt), type: lt }, lossy || le.raw !== null);
    }
  }
}

/** A whiteout for `name`: a delete only if the lower layer had something there. */
function whiteout(name: string, rel: string, lowerIdx: LowerIndex | null, lossy: boolean, out: Change[]): void {
  const le = lowerIdx?.get(name);
  if (le === undefined) return;
  const lt = publicType(le.type);
  const c: Change = { kind: "delete", path: slash(rel + name, lt), type: lt };
  if (lossy || le.raw !== null) c.lossy = true;
  out.push(c);
}

function dirMetaChanged(upperAbs: FsPath, lowerAbs: FsPath): boolean {
  const a = lstatSync(upperAbs);
  const b = lstatSync(lowerAbs);
  return (a.mode & 0o7777) !== (b.mode & 0o7777) || a.uid !== b.uid || a.gid !== b.gid;
}

// ---------------------------------------------------------------------------------------------
// Ordering, truncation, tree hash

/** Code-point order (= UTF-8 byte order), independent of readdir order and locale. */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (U+D800..DFFF) encode code points above U+FFFF: move them above U+E000..FFFF.
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

const KIND_LETTER: Record<ChangeKind, string> = { write: "W", mod: "M", delete: "D" };
const KIND_RANK: Record<ChangeKind, number> = { mod: 0, delete: 1, write: 2 };

const HAS_SURROGATE = /[\uD800-\uDFFF]/;
const plainCompare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Path order (code points), then mods < deletes < writes. */
export function sortChanges(cs: Change[]): Change[] {
  // Without surrogates, UTF-16 unit order IS code-point order: use the native comparison
  // (2x faster on 100k paths than the general one).
  const cmp = cs.some((c) => HAS_SURROGATE.test(c.path)) ? compareUtf8 : plainCompare;
  return cs.sort((a, b) => cmp(a.path, b.path) || KIND_RANK[a.kind] - KIND_RANK[b.kind]);
}

const isDirPath = (p: string): boolean => p.endsWith("/");

const depth = (p: string): number => {
  let n = 0;
  for (let i = 0; i < p.length - 1; i++) if (p.charCodeAt(i) === 47) n++;
  return n;
};

/**
 * `sha256:<hex>` over the FULL sorted change list, one JSON array per line (docs/FS_DIFF.md):
 *   ["W"|"M", path, "f", mode, size, "<sha256 of content>"]   regular file
 *   ["W"|"M", path, "l", "<link target>"]                      symlink
 *   ["W"|"M", path, "d", mode]                                 directory (path ends in "/")
 *   ["W"|"M", path, "o", mode]                                 fifo, socket, device
 *   ["D", path]                                                delete
 * mode = st_mode & 07777 as a decimal integer; owners and timestamps are left out (they
 * differ between runs and user-namespace mappings without the result differing).
 */
export function treeHash(sorted: Change[]): string {
  const t = new TreeHasher();
  for (const c of sorted) t.add(c);
  return t.digest();
}

/**
 * treeHash that gives the event loop back every ~1000 entries: hashing a 100k-file diff reads
 * every file (~0.5-1 s), which must not freeze the agent's other requests meanwhile.
 */
export async function treeHashAsync(sorted: Change[]): Promise<string> {
  const t = new TreeHasher();
  for (let i = 0; i < sorted.length; i++) {
    t.add(sorted[i] as Change);
    if ((i & 1023) === 1023) await new Promise<void>((r) => setImmediate(r));
  }
  return t.digest();
}

class TreeHasher {
  private readonly h = new Bun.CryptoHasher("sha256");
  private readonly buf = Buffer.allocUnsafe(1 << 16);
  // Lines are fed to the hasher in batches: one native update per ~1000 entries, not per line.
  private batch = "";
  private n = 0;

  add(c: Change): void {
    const k = KIND_LETTER[c.kind];
    const p = JSON.stringify(c.path);
    let line: string;
    if (c.kind === "delete" || c.upper === undefined) line = `["${k}",${p}]\n`;
    else if (c.type === "symlink") line = `["${k}",${p},"l",${JSON.stringify(readlinkSync(c.upper))}]\n`;
    else if (c.type === "file") {
      const [mode, size, sha] = fileDigest(c.upper, this.buf);
      line = `["${k}",${p},"f",${mode},${size},"${sha}"]\n`;
    } else line = `["${k}",${p},"${c.type === "dir" ? "d" : "o"}",${lstatSync(c.upper).mode & 0o7777}]\n`;
    this.batch += line;
    if (++this.n === 1024) {
      this.h.update(this.batch);
      this.batch = "";
      this.n = 0;
    }
  }

  digest(): string {
    this.h.update(this.batch);
    return `sha256:${this.h.digest("hex")}`;
  }
}

/**
 * [mode, size, sha256 hex] of a regular file, read through one fd: open + fstat + read(s) +
 * close. The upper dir is static (the world is gone), so reading stops at st_size: no extra
 * read() to see EOF, and files up to 64 KiB (most of a node_modules) take one read and a
 * one-shot hash.
 */
function fileDigest(abs: FsPath, buf: Buffer): [number, number, string] {
  // O_NOFOLLOW: the entry was a regular file at walk time; never follow a swapped-in symlink.
  const fd = openSync(abs, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const st: Stats = fstatSync(fd);
    const mode = st.mode & 0o7777;
    if (st.size <= buf.length) {
      let got = 0;
      while (got < st.size) {
        const n = readSync(fd, buf, got, st.size - got, null);
        if (n <= 0) break;
        got += n;
      }
      return [mode, got, Bun.CryptoHasher.hash("sha256", buf.subarray(0, got), "hex") as string];
    }
    const h = new Bun.CryptoHasher("sha256");
    let total = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n <= 0) break;
      total += n;
      h.update(buf.subarray(0, n));
    }
    return [mode, total, h.digest("hex")];
  } finally {
    closeSync(fd);
  }
}

export interface DiffSummary {
  dirs: number;
  files: number;
}

export function countChanges(cs: Change[]): DiffSummary {
  let dirs = 0;
  for (const c of cs) if (isDirPath(c.path)) dirs++;
  return { dirs, files: cs.length - dirs };
}

/**
 * Smart truncation. When more than `maxFiles` files or `maxDirs` dirs changed, list the most
 * informative ones: mods, then deletes, then writes; within each, shallow paths first, then
 * path order. (`npm install` then still shows `package-lock.json` and the top of
 * `node_modules/`, not 1000 files deep in the first package.) The lists stay path-sorted.
 */
export function buildFsDiff(sorted: Change[], o: OverlayDiffOptions = {}, precomputedHash?: string): FsDiff {
  const maxFiles = o.maxFiles ?? MAX_FILE_LIST;
  const maxDirs = o.maxDirs ?? MAX_TRACKED_DIRS;
  const { dirs, files } = countChanges(sorted);
  const truncated = files > maxFiles || dirs > maxDirs;

  let listed = sorted;
  if (truncated) {
    const byPriority = [...sorted].sort(
      (a, b) => KIND_RANK[a.kind] - KIND_RANK[b.kind] || depth(a.path) - depth(b.path) || compareUtf8(a.path, b.path),
    );
    const keep = new Set<Change>();
    let nf = 0;
    let nd = 0;
    for (const c of byPriority) {
      if (isDirPath(c.path)) {
        if (nd < maxDirs) {
          nd++;
          keep.add(c);
        }
      } else if (nf < maxFiles) {
        nf++;
        keep.add(c);
      }
      if (nf >= maxFiles && nd >= maxDirs) break;
    }
    listed = sorted.filter((c) => keep.has(c));
  }

  const diff: FsDiff = { writes: [], mods: [], deletes: [] };
  for (const c of listed) {
    if (c.kind === "write") diff.writes.push(c.path);
    else if (c.kind === "mod") diff.mods.push(c.path);
    else diff.deletes.push(c.path);
  }
  const counts = `${dirs} dirs, ${files} files`;
  if (truncated) {
    diff.truncated = true;
    diff.tree_hash = precomputedHash ?? treeHash(sorted);
    diff.summary = `${counts} (truncated, see tree_hash)`;
  } else {
    if (o.alwaysHash) diff.tree_hash = precomputedHash ?? treeHash(sorted);
    diff.summary = counts;
  }
  return diff;
}

/** Whether buildFsDiff will need the tree hash for these changes and options. */
export function needsTreeHash(sorted: Change[], o: OverlayDiffOptions = {}): boolean {
  const { dirs, files } = countChanges(sorted);
  return o.alwaysHash === true || files > (o.maxFiles ?? MAX_FILE_LIST) || dirs > (o.maxDirs ?? MAX_TRACKED_DIRS);
}

/**
 * The fs diff of an overlay: `upperDir` as written by the world, `lowerDir` the project it was
 * layered over (the host project, unchanged by the world).
 */
export async function overlayDiff(upperDir: string, lowerDir: string, opts: OverlayDiffOptions = {}): Promise<FsDiff> {
  const changes = sortChanges(collectChanges(upperDir, lowerDir, opts));
  const hash = needsTreeHash(changes, opts) ? await treeHashAsync(changes) : undefined;
  return buildFsDiff(changes, opts, hash);
}
