/**
 * Issue 13 (FSVIEW): the policy's filesystem view, turned into mounts of a world's root. Runs
 * in the spawner (stage 1: root of its namespaces, before pivot_root), called by rootfs.ts.
 *
 * What a command sees (docs/WORLD.md "What a command sees"):
 * - the caller's home at its real path, read-only, minus `deny_read` (empty dir / empty file
 *   in place of each hidden path: it looks empty, never an error that tells anything);
 * - each `write` entry as a writable bind (nosuid,nodev) of the host path, resolved AS THE
 *   CALLER (fsuid/fsgid/groups of the caller on this thread: symlinks, permissions and the
 *   mkdir of a missing directory are the caller's), and only when the result is owned by the
 *   caller: a `~/.cache -> /etc` symlink gives nothing the caller could not write on the host;
 * - the always-read-only paths (ALWAYS_RO_* + the policy's `read_only`) bound read-only over
 *   themselves wherever they lie inside a writable area; their parents inside that area are
 *   pinned (bound onto themselves) so `mv .git x` cannot carry them away (EBUSY);
 * - scratch (/tmp, /var/tmp, /run, and /root when there is no caller home) as ONE tmpfs of a
 *   bounded size, so all of them together are bounded (issue 18.7).
 *
 * Glob → mount semantics (docs/POLICY.md "Filesystem view"): `dir/**` = the directory `dir`;
 * a path without wildcards = that file or directory; `*`, `?`, `[...]` in any component
 * (a `**` elsewhere than at the end counts as `*`) are expanded against the host filesystem
 * when the world is built: each match is one mount, later matches are not covered.
 *
 * Every mount target is opened with openat2(RESOLVE_NO_SYMLINKS) beneath the world's root and
 * mounted through its fd (open_tree + mount_setattr + move_mount): a symlink swapped in by a
 * concurrent command can redirect nothing.
 */
import { chmodSync, chownSync, closeSync, existsSync, fstatSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmdirSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { ptr } from "bun:ffi";
import { check, cstr, sys, MS, mount, umount2, MNT_DETACH } from "../../src/sys/libc.ts";
import { FsView, type Caller } from "../../src/contract/world.ts";

const X64 = process.arch !== "arm64";
const NR = {
  setfsuid: X64 ? 122 : 151,
  setfsgid: X64 ? 123 : 152,
  setgroups: X64 ? 116 : 159,
  mkdirat: X64 ? 258 : 34,
  open_tree: 428,
  move_mount: 429,
  openat2: 437,
  mount_setattr: 442,
};
const O_CLOEXEC = 0x80000;
const O_PATH = 0x200000;
const O_DIRECTORY = 0x10000;
const AT_EMPTY_PATH = 0x1000;
const AT_RECURSIVE = 0x8000;
const OPEN_TREE_CLONE = 1;
const MOUNT_ATTR = { RDONLY: 1n, NOSUID: 2n, NODEV: 4n };
const RESOLVE_NO_MAGICLINKS = 2n;
const RESOLVE_NO_SYMLINKS = 4n;
const EMPTY = cstr("");

/** Scratch size when the world has no memory limit (issue 18.7). */
export const DEFAULT_SCRATCH_BYTES = 1024 * 1024 * 1024;

/**
 * Always read-only inside the project (and inside any writable area): files that run code or
 * grant permissions on the host later, outside any world. A policy adds paths (`fs.read_only`),
 * never removes these.
 */
export const ALWAYS_RO_PROJECT: readonly string[] = [
  ".git", // only when it is a FILE (`gitdir: …` of a worktree or submodule): it says where the hooks are
  ".git/hooks",
  ".git/config",
  ".git/config.worktree",
  ".git/info/attributes",
  ".git/modules/*/hooks", // submodules: their git dirs live inside the project's .git
  ".git/modules/*/config",
  ".substrate-profile",
  ".envrc",
  ".vscode",
  ".idea",
  ".claude",
  ".mcp.json",
  ".cursor",
  ".zed",
  ".devcontainer",
  ".husky",
  ".pre-commit-config.yaml", // run by an installed pre-commit hook at the next `git commit` on the host
  "lefthook.yml",
  ".lefthook.yml",
  ".bashrc",
  ".bash_profile",
  ".bash_login",
  ".profile",
  ".zshrc",
  ".zshenv",
  ".zprofile",
  ".zlogin",
];
/** Same, relative to the caller's home (only matters when a `write` entry covers them). */
export const ALWAYS_RO_HOME: readonly string[] = [
  ".bashrc",
  ".bash_profile",
  ".bash_login",
  ".bash_logout",
  ".profile",
  ".zshrc",
  ".zshenv",
  ".zprofile",
  ".zlogin",
  ".config/fish",
  ".gitconfig",
  ".config/git",
  ".substrate",
  ".claude",
  ".claude.json",
  ".cursor",
  ".vscode",
  ".config/Code/User",
];
/**
 * Missing protected DIRECTORIES are created empty (owned by their parent's owner) before the
 * read-only bind, so a command cannot create them: a new `.git/hooks/post-checkout` or
 * `.claude/settings.json` would run code on the host. Missing protected FILES are not created
 * (an empty `.envrc` or `.substrate-profile` would change what tools do); docs/WORLD.md.
 */
export const PLACEHOLDER_DIRS: readonly string[] = [".git/hooks", ".vscode", ".idea", ".claude", ".cursor"];

/**
 * Always hidden in the caller's home, whatever `deny_read` says: a rootless agent's own socket
 * (~/.substrate/run/substrate.sock) — a read-only mount does not stop connect(2), and a command
 * that reaches its agent could ask for a world with a wider view — and the Mac side's forward.
 */
export const ALWAYS_HIDDEN_HOME: readonly string[] = [".substrate/run", ".substrate/sock"];

/** Protected only when they are files (a `.git` directory is where commits go). */
const FILE_ONLY = new Set([".git"]);

/** World-own scratch: `write` entries here are the world's tmpfs, never host binds. */
const SCRATCH = ["/tmp", "/var/tmp", "/run", "/dev/shm"];

const inside = (base: string, p: string): boolean => p === base || p.startsWith(base.endsWith("/") ? base : `${base}/`);
const errMsg = (e: unknown): string => (e instanceof Error ? e.message : String(e));

// ------------------------------------------------------------------ patterns

/**
 * `$HOME`, `${HOME}`, a leading `~`, `$PROJECT`, `${PROJECT}` → absolute path pattern; null
 * when it needs a home the world has not got, or is not absolute after expansion.
 */
export function expandPattern(p: string, home: string | undefined, project: string): string | null {
  let r = p.trim();
  if (r === "~" || r.startsWith("~/")) {
    if (!home) return null;
    r = home + r.slice(1);
  }
  let missing = false;
  r = r.replace(/\$\{(HOME|PROJECT)\}|\$(HOME|PROJECT)(?![A-Za-z0-9_])/g, (_m, a: string | undefined, b: string | undefined) => {
    const v = (a ?? b) === "HOME" ? home : project;
    if (!v) missing = true;
    return v ?? "";
  });
  if (missing || !r.startsWith("/")) return null;
  // Normalise: no `.`/`..` games, no double slashes, no trailing slash.
  const parts: string[] = [];
  for (const c of r.split("/")) {
    if (c === "" || c === ".") continue;
    if (c === "..") parts.pop();
    else parts.push(c);
  }
  return `/${parts.join("/")}`;
}

const GLOB = /[*?[]/;

/** Split off a trailing `/**` (the directory itself). */
export function splitDirGlob(pattern: string): { path: string; dir: boolean } {
  if (pattern === "/**") return { path: "/", dir: true };
  if (pattern.endsWith("/**")) return { path: pattern.slice(0, -3) || "/", dir: true };
  return { path: pattern, dir: false };
}

function globToRegExp(comp: string): RegExp {
  let re = "";
  for (let i = 0; i < comp.length; i++) {
    const c = comp[i]!;
    if (c === "*") {
      while (comp[i + 1] === "*") i++;
      re += "[^/]*";
    } else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = comp.indexOf("]", i + 2);
      if (end < 0) re += "\\[";
      else {
        let body = comp.slice(i + 1, end);
        if (body.startsWith("!")) body = `^${body.slice(1)}`;
        re += `[${body.replace(/\\/g, "\\\\")}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\/]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

/**
 * Existing host paths a (no longer `/**`-suffixed) pattern names; a pattern without wildcards
 * gives itself whether or not it exists (the caller decides what a missing one means).
 * Dot entries match only a component that starts with `.` itself (like the shell).
 */
export function expandGlob(path: string, readdir: (d: string) => string[] = (d) => readdirSync(d)): string[] {
  if (!GLOB.test(path)) return [path];
  let acc = ["/"];
  for (const comp of path.split("/").filter(Boolean)) {
    const next: string[] = [];
    for (const base of acc) {
      if (!GLOB.test(comp)) {
        next.push(join(base, comp));
        continue;
      }
      const re = globToRegExp(comp);
      let names: string[] = [];
      try {
        names = readdir(base);
      } catch {}
      for (const n of names.sort()) if (re.test(n) && (!n.startsWith(".") || comp.startsWith("."))) next.push(join(base, n));
    }
    acc = next;
    if (acc.length > 256) acc = acc.slice(0, 256); // a policy glob is not a crawler
  }
  return acc;
}

// ------------------------------------------------------------------ plan (pure)

export interface FsViewPlanInput {
  view?: FsView;
  caller?: Caller;
  project: string;
  projectReadOnly?: boolean;
  /**
   * LEAD (issues 13/14): the agent's own paths, hidden whatever the view says — its state dir
   * (every world's control socket, gateway sockets), its API socket, the isolated-results base.
   * A read-only mount does not stop connect(2): a visible control socket is another world.
   */
  hide?: string[];
}

export interface FsViewPlan {
  /** The caller's home (bound read-only); undefined without a caller (legacy: /root scratch). */
  home?: string;
  /** fs.read covers "/": every top-level host dir read-only (like fs_isolation = full). */
  fullRead: boolean;
  /** Extra read-only host paths (patterns, expanded at build). */
  read: string[];
  /** Writable host entries (patterns, expanded at build as the caller). `dir`: ends in /**. */
  write: { path: string; dir: boolean }[];
  deny: string[];
  readOnly: string[];
  /** Entries dropped while planning, one line each (shown in the spawner's log). */
  notes: string[];
}

export function planFsView(o: FsViewPlanInput): FsViewPlan {
  const view = o.view ?? FsView.parse({});
  const home = o.caller?.home;
  const notes: string[] = [];
  const exp = (list: readonly string[], what: string) =>
    list.flatMap((p) => {
      const e = expandPattern(p, home, o.project);
      if (e === null) notes.push(`fs.${what}: ${p}: needs a caller home or is not absolute; ignored`);
      return e === null ? [] : [e];
    });
  const read = exp(view.read, "read").map(splitDirGlob);
  const fullRead = read.some((r) => r.path === "/");
  const write = exp(view.write, "write")
    .map(splitDirGlob)
    .filter((w) => {
      // The project and the world's scratch are writable (or not) by their own mounts (a home
      // under /tmp is still the caller's home, not scratch).
      if (inside(o.project, w.path)) return false;
      if (SCRATCH.some((s) => inside(s, w.path)) && !(home && inside(home, w.path))) return false;
      if (!home && w.path.startsWith("/root")) return false; // legacy /root scratch
      return true;
    });
  return {
    ...(home ? { home } : {}),
    fullRead,
    read: read.filter((r) => r.path !== "/").map((r) => r.path),
    write,
    deny: [...exp(view.deny_read, "deny_read"), ...(home ? ALWAYS_HIDDEN_HOME.map((r) => join(home, r)) : []), ...(o.hide ?? [])].map((p) => splitDirGlob(p).path),
    readOnly: [
      ...ALWAYS_RO_PROJECT.map((r) => join(o.project, r)),
      ...(home ? ALWAYS_RO_HOME.map((r) => join(home, r)) : []),
      ...exp(view.read_only, "read_only").map((p) => splitDirGlob(p).path),
    ],
    notes,
  };
}

/**
 * Which always-read-only paths of the project exist now (host side, ~20 lstat calls): part of
 * the session key, so a protected file that appears on the host (`.envrc` created by the user,
 * or by a command of the last world) is protected by the next command's world.
 */
export function protectedFingerprint(project: string, view?: FsView): string {
  const extra = (view?.read_only ?? []).flatMap((p) => {
    const e = expandPattern(p, undefined, project);
    return e && inside(project, e) ? [relative(project, splitDirGlob(e).path)] : [];
  });
  let bits = "";
  for (const r of [...ALWAYS_RO_PROJECT, ...extra]) {
    try {
      const st = lstatSync(join(project, r));
      // An EMPTY directory counts as absent: it is what a world's own placeholder leaves (and
      // a missing path gets a placeholder, pinned the same way), so a world's first command
      // must not change its own key (LEAD: this churned a new world on the second execute).
      bits += st.isDirectory() && readdirSync(join(project, r)).length === 0 ? "0" : "1";
    } catch {
      bits += "0";
    }
  }
  return bits;
}

// ------------------------------------------------------------------ syscalls

/** openat2(dirfd, path, O_PATH, RESOLVE_NO_SYMLINKS|NO_MAGICLINKS) → fd, or throws (ELOOP on a symlink). */
function openNoSymlinks(dirfd: number, rel: string, dirOnly = false): number {
  const how = new BigUint64Array([BigInt(O_PATH | O_CLOEXEC | (dirOnly ? O_DIRECTORY : 0)), 0n, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS]);
  const p = cstr(rel === "" ? "." : rel);
  return check(`openat2 ${rel}`, sys(NR.openat2, BigInt(dirfd), BigInt(ptr(p)), BigInt(ptr(how)), 24n));
}

function openFollow(path: string, dirOnly: boolean): number {
  const how = new BigUint64Array([BigInt(O_PATH | O_CLOEXEC | (dirOnly ? O_DIRECTORY : 0)), 0n, RESOLVE_NO_MAGICLINKS]);
  const p = cstr(path);
  return check(`open ${path}`, sys(NR.openat2, BigInt.asUintN(64, -100n), BigInt(ptr(p)), BigInt(ptr(how)), 24n));
}

function mkdirAt(dirfd: number, name: string, mode: number): void {
  const p = cstr(name);
  check(`mkdir ${name}`, sys(NR.mkdirat, BigInt(dirfd), BigInt(ptr(p)), BigInt(mode)));
}

/** Bind the object behind `srcFd` onto `dstFd`: always nosuid,nodev; `ro` read-only. */
function bindFd(srcFd: number, dstFd: number, ro: boolean, recursive = true): void {
  const rec = recursive ? AT_RECURSIVE : 0;
  const tree = check("open_tree", sys(NR.open_tree, BigInt(srcFd), BigInt(ptr(EMPTY)), BigInt(OPEN_TREE_CLONE | O_CLOEXEC | AT_EMPTY_PATH | rec)));
  try {
    const attr = new BigUint64Array([MOUNT_ATTR.NOSUID | MOUNT_ATTR.NODEV | (ro ? MOUNT_ATTR.RDONLY : 0n), 0n, 0n, 0n]);
    check("mount_setattr", sys(NR.mount_setattr, BigInt(tree), BigInt(ptr(EMPTY)), BigInt(AT_EMPTY_PATH | rec), BigInt(ptr(attr)), 32n));
    check("move_mount", sys(NR.move_mount, BigInt(tree), BigInt(ptr(EMPTY)), BigInt(dstFd), BigInt(ptr(EMPTY)), 0x4n | 0x40n));
  } finally {
    closeSync(tree);
  }
}

/** Host uid/gid as seen in this (maybe user) namespace; undefined when unmapped. */
function toNs(id: number, mapFile: string): number | undefined {
  let text = "";
  try {
    text = readFileSync(mapFile, "utf8");
  } catch {
    return id;
  }
  for (const line of text.trim().split("\n")) {
    const [inner, outer, count] = line.trim().split(/\s+/).map(Number);
    if (outer !== undefined && count !== undefined && inner !== undefined && id >= outer && id < outer + count) return inner + (id - outer);
  }
  return undefined;
}

interface NsCaller {
  uid: number;
  gid: number;
  groups: number[];
  /** host uid 0: may write anything on the host anyway */
  root: boolean;
}

function nsCaller(c: Caller): NsCaller | undefined {
  const uid = toNs(c.uid, "/proc/self/uid_map");
  const gid = toNs(c.gid, "/proc/self/gid_map");
  if (uid === undefined || gid === undefined) return undefined;
  const groups = c.groups.map((g) => toNs(g, "/proc/self/gid_map")).filter((g): g is number => g !== undefined);
  return { uid, gid, groups, root: c.uid === 0 };
}

function threadGroups(): number[] {
  const m = /^Groups:\s*(.*)$/m.exec(readFileSync("/proc/thread-self/status", "utf8"));
  return (m?.[1] ?? "").trim().split(/\s+/).filter(Boolean).map(Number);
}

function setGroupsThread(groups: number[]): void {
  const g = new Uint32Array(groups.length || 1);
  groups.forEach((v, i) => (g[i] = v));
  check("setgroups", sys(NR.setgroups, BigInt(groups.length), BigInt(ptr(g))));
}

/**
 * Run `f` with this thread's filesystem identity set to the caller (fsuid, fsgid, groups):
 * the kernel then resolves paths, follows symlinks, checks permissions and owns new files
 * exactly as for the caller (fsuid ≠ 0 also clears CAP_DAC_OVERRIDE & co. for the call).
 * Synchronous fs calls of Bun run on this thread. Restored afterwards.
 */
export function asCaller<T>(c: NsCaller, f: () => T): T {
  const saved = threadGroups();
  const none = BigInt.asUintN(64, -1n); // an invalid id: setfs*id only reports the current one
  const fsuid = sys(NR.setfsuid, none);
  const fsgid = sys(NR.setfsgid, none);
  // A rootless world's user namespace denies setgroups (/proc/self/setgroups): its groups are
  // the user's own already.
  let groupsSet = true;
  try {
    setGroupsThread(c.groups);
  } catch {
    groupsSet = false;
  }
  sys(NR.setfsgid, BigInt(c.gid));
  sys(NR.setfsuid, BigInt(c.uid));
  try {
    if (sys(NR.setfsuid, none) !== c.uid || sys(NR.setfsgid, none) !== c.gid) throw new Error(`cannot act as uid ${c.uid} (setfsuid refused)`);
    return f();
  } finally {
    sys(NR.setfsuid, BigInt(fsuid));
    sys(NR.setfsgid, BigInt(fsgid));
    if (groupsSet) setGroupsThread(saved);
  }
}

// ------------------------------------------------------------------ build

export interface FsViewResult {
  /** In-world paths writable through `write` binds (for Landlock's rw list). */
  rw: string[];
  /** Host paths of placeholder dirs created for protected names (removed when empty at world end). */
  placeholders: string[];
  warnings: string[];
}

/** Rights of the last view built in this process (the spawner builds exactly one). */
let lastRw: string[] = [];
/** For harden.ts worldRwPaths: the writable binds of this world's view. */
export function fsViewRwPaths(): string[] {
  return [...lastRw];
}

/**
 * One tmpfs of `bytes` for all scratch dirs (bound from it), so together they are bounded.
 * `rootHome`: also a /root scratch (no caller home replaces it).
 */
export function mountScratch(root: string, bytes: number, rootHome: boolean): void {
  const R = (p: string) => join(root, p);
  const src = R("/.scratch");
  mkdirSync(src, { recursive: true });
  mount("tmpfs", src, "tmpfs", MS.NOSUID | MS.NODEV, `mode=0755,size=${Math.max(1, Math.floor(bytes / 4096)) * 4096}`);
  const dirs: [string, string, number][] = [
    ["tmp", "/tmp", 0o1777],
    ["var-tmp", "/var/tmp", 0o1777],
    ["run", "/run", 0o755],
    ...(rootHome ? ([["root", "/root", 0o700]] as [string, string, number][]) : []),
  ];
  for (const [name, target, mode] of dirs) {
    mkdirSync(join(src, name));
    chmodSync(join(src, name), mode); // mkdir applies the umask and never sets the sticky bit
    mkdirSync(R(target), { recursive: true });
    mount(join(src, name), R(target), null, MS.BIND);
  }
  umount2(src, MNT_DETACH);
}

/**
 * /sys read-only (a fresh sysfs of the world's network namespace), with the world's own
 * cgroups at /sys/fs/cgroup: each host hierarchy is mounted and only the world's own cgroup
 * (its cgroup-namespace root, or its path when there is no cgroup namespace) is bound in.
 */
export function mountSys(root: string, warnings: string[]): void {
  const R = (p: string) => join(root, p);
  mkdirSync(R("/sys"), { recursive: true });
  try {
    mount("sysfs", R("/sys"), "sysfs", MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC);
  } catch (e) {
    warnings.push(`/sys: ${errMsg(e)}; the world has no /sys`);
    return;
  }
  const cgRoot = R("/sys/fs/cgroup");
  if (!existsSync(cgRoot)) return;
  let own: string[] = [];
  const hier: { mp: string; fstype: string; opts?: string; ownPath: string }[] = [];
  try {
    own = readFileSync("/proc/self/cgroup", "utf8").split("\n").filter(Boolean);
    const seen = new Set<string>();
    for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
      const [pre, post] = line.split(" - ");
      if (!pre || !post) continue;
      const mp = pre.split(" ")[4]!;
      const [fstype = "", , superOpts = ""] = post.split(" ");
      if ((fstype !== "cgroup" && fstype !== "cgroup2") || !inside("/sys/fs/cgroup", mp) || seen.has(mp)) continue;
      seen.add(mp);
      if (fstype === "cgroup2") {
        hier.push({ mp, fstype, ownPath: own.find((x) => x.startsWith("0::"))?.slice(3) || "/" });
        continue;
      }
      const opts = superOpts.split(",").filter((o) => o !== "rw" && o !== "ro" && !o.startsWith("release_agent") && o !== "clone_children" && o !== "noprefix" && o !== "xattr");
      const names = new Set(opts);
      const l = own.find((x) => (x.split(":")[1] ?? "").split(",").some((n) => n !== "" && names.has(n)));
      hier.push({ mp, fstype, opts: opts.join(","), ownPath: l?.split(":")[2] || "/" });
    }
  } catch {
    return;
  }
  // Pure v2 (cgroup2 at /sys/fs/cgroup itself): the world's cgroup IS /sys/fs/cgroup.
  const flat = hier.length > 0 && hier.every((h) => h.mp === "/sys/fs/cgroup");
  if (!flat) mount("tmpfs", cgRoot, "tmpfs", MS.NOSUID | MS.NODEV | MS.NOEXEC, "mode=0755,size=64k");
  const stage = R("/.cgstage");
  mkdirSync(stage, { recursive: true });
  for (const h of hier) {
    const rel = h.mp === "/sys/fs/cgroup" ? "" : h.mp.slice("/sys/fs/cgroup/".length);
    try {
      const dst = rel === "" ? cgRoot : join(cgRoot, rel);
      mkdirSync(dst, { recursive: true });
      // The hierarchy as this cgroup namespace sees it, then only the world's own cgroup of it
      // (with a cgroup namespace that is its root; without one, its path).
      mount(h.fstype, stage, h.fstype, MS.NOSUID | MS.NODEV | MS.NOEXEC, h.opts);
      try {
        mount(join(stage, h.ownPath), dst, null, MS.BIND);
        mount("none", dst, null, MS.REMOUNT | MS.BIND | MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC);
      } finally {
        umount2(stage, MNT_DETACH);
      }
    } catch (e) {
      warnings.push(`/sys/fs/cgroup/${rel}: ${errMsg(e)}`);
    }
  }
  rmdirSync(stage);
  if (flat) return;
  // Controller aliases (cpu -> cpu,cpuacct) as the host has them.
  try {
    for (const n of readdirSync("/sys/fs/cgroup")) {
      const hp = join("/sys/fs/cgroup", n);
      if (lstatSync(hp).isSymbolicLink() && !existsSync(join(cgRoot, n))) symlinkSync(readlinkSync(hp), join(cgRoot, n));
    }
  } catch {}
  try {
    mount("none", cgRoot, null, MS.REMOUNT | MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC, "mode=0755,size=64k");
  } catch (e) {
    warnings.push(`/sys/fs/cgroup: ${errMsg(e)}`);
  }
}

/** The world's memory limit as its own /sys/fs/cgroup shows it (after mountSys). */
export function worldMemoryLimit(root: string): number | undefined {
  for (const f of ["/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/unified/memory.max"]) {
    try {
      const t = readFileSync(join(root, f), "utf8").trim();
      if (t === "max") return undefined;
      const n = Number(t);
      if (Number.isFinite(n)) return n > 2 ** 60 ? undefined : n;
    } catch {}
  }
  return undefined;
}

/** Scratch size: half the world's memory limit (pages are charged to it too), else the default. */
export function scratchBytes(root: string): number {
  const lim = worldMemoryLimit(root);
  return lim === undefined ? DEFAULT_SCRATCH_BYTES : Math.max(64 * 1024 * 1024, Math.floor(lim / 2));
}

export interface BuildFsViewOptions {
  root: string;
  plan: FsViewPlan;
  caller?: Caller;
  project: string;
  projectReadOnly?: boolean;
  /** The project is an overlay (isolated): no placeholders (they would land in the diff). */
  projectOverlay?: boolean;
  /** Where to record placeholders (host path, outside the world's root); optional. */
  placeholderFile?: string;
}

/** Stage A, after the system dirs and scratch, before the project: home + write binds. */
export function mountHomeAndWrites(o: BuildFsViewOptions, res: FsViewResult): void {
  const R = (p: string) => join(o.root, p);
  const rootFd = openFollow(o.root, true);
  try {
    if (o.plan.home === "/") res.warnings.push("the caller's home is /: not bound (the world shows what its fs view shows)");
    else if (o.plan.home) {
      const h = o.plan.home;
      if (existsSync(h) && lstatSync(h).isDirectory()) {
        const src = openFollow(h, true);
        try {
          const dst = targetFd(rootFd, h, "dir");
          try {
            bindFd(src, dst, true);
          } finally {
            closeSync(dst);
          }
        } finally {
          closeSync(src);
        }
      } else {
        mkdirSync(R(h), { recursive: true }); // an empty, read-only home: the caller's has gone
        res.warnings.push(`home ${h} does not exist on the host; the world's is empty`);
      }
    }
    const who = o.caller ? nsCaller(o.caller) : undefined;
    for (const w of o.plan.write) {
      if (!who) {
        res.warnings.push(`fs.write ${w.path}: the world has no caller identity to create or check it as; not writable`);
        continue;
      }
      const paths = asCaller(who, () => expandGlob(w.path));
      for (const p of paths) {
        try {
          const real = writableAsCaller(who, p, w.dir);
          if (real === null) continue;
          const src = real.fd;
          try {
            const dst = targetFd(rootFd, real.path, real.dir ? "dir" : "file");
            try {
              bindFd(src, dst, false);
            } finally {
              closeSync(dst);
            }
            res.rw.push(real.path);
          } finally {
            closeSync(src);
          }
        } catch (e) {
          res.warnings.push(`fs.write ${p}: ${errMsg(e)}; not writable`);
        }
      }
    }
  } finally {
    closeSync(rootFd);
  }

  function writableAsCaller(who: NsCaller, p: string, dir: boolean): { fd: number; path: string; dir: boolean } | null {
    const fd = asCaller(who, () => {
      if (dir && !existsSync(p)) mkdirSync(p, { recursive: true, mode: 0o700 });
      if (!existsSync(p)) return null; // a missing file entry: nothing to bind
      return openFollow(p, dir);
    });
    if (fd === null) {
      res.warnings.push(`fs.write ${p}: does not exist; nothing bound`);
      return null;
    }
    const st = fstatSync(fd);
    if (!who.root && st.uid !== who.uid) {
      closeSync(fd);
      res.warnings.push(`fs.write ${p}: resolves to a path not owned by the caller (uid ${st.uid}); not writable`);
      return null;
    }
    if (!st.isDirectory() && !st.isFile()) {
      closeSync(fd);
      res.warnings.push(`fs.write ${p}: neither a file nor a directory; not writable`);
      return null;
    }
    let path = p;
    try {
      path = realpathSync(`/proc/self/fd/${fd}`);
    } catch {}
    return { fd, path, dir: st.isDirectory() };
  }
}

/**
 * An fd for `path` inside the world's root (no symlink anywhere below the root), creating the
 * mount point in the root tmpfs when it is missing (never through a symlink).
 */
function targetFd(rootFd: number, path: string, kind: "dir" | "file"): number {
  const comps = path.split("/").filter(Boolean);
  let fd = openNoSymlinks(rootFd, "", true);
  try {
    for (let i = 0; i < comps.length; i++) {
      const last = i === comps.length - 1;
      const c = comps[i]!;
      let next: number;
      try {
        next = openNoSymlinks(fd, c, !last || kind === "dir");
      } catch (e) {
        if (!/errno 2\)/.test(errMsg(e))) throw e;
        if (last && kind === "file") {
          const d = realpathSync(`/proc/self/fd/${fd}`);
          writeFileSync(join(d, c), "", { flag: "wx" });
        } else mkdirAt(fd, c, 0o755);
        next = openNoSymlinks(fd, c, !last || kind === "dir");
      }
      closeSync(fd);
      fd = next;
    }
    return fd;
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/** Writable areas of the world (in-world = host paths). */
function writableAreas(o: BuildFsViewOptions, res: FsViewResult): string[] {
  return [...(o.projectReadOnly ? [] : [o.project]), ...res.rw];
}

/** Stage B, after the project: deny-read hides, then the always-read-only paths. */
export function mountHidesAndProtected(o: BuildFsViewOptions, res: FsViewResult): void {
  const R = (p: string) => join(o.root, p);
  const rootFd = openFollow(o.root, true);
  // Empty files come from a tiny tmpfs of their own, detached afterwards: an unlinked file on
  // the root tmpfs would make its final read-only remount fail (EBUSY).
  const emptyDir = R("/.fsview-empty");
  const empty = join(emptyDir, "empty");
  // Hidden paths look empty and belong to the caller: `ls ~/.ssh` lists nothing, `cat
  // ~/.ssh/id_rsa` says "No such file" (not EACCES, which would say something is there).
  const who = o.caller ? nsCaller(o.caller) : undefined;
  const owner = who ? `,uid=${who.uid},gid=${who.gid}` : "";
  try {
    // ---- hides: an empty read-only dir (tmpfs) or an empty file in place of each path
    const seen = new Set<string>();
    for (const pat of o.plan.deny) {
      for (const p of expandGlob(pat)) {
        let st;
        try {
          st = lstatSync(p);
        } catch {
          continue; // absent on the host: absent in the world
        }
        // The canonical path (world paths mirror the host's real ones: a symlinked ancestor such
        // as /home -> /var/home would make the mount target unreachable), and for a symlinked
        // entry what it points to (the link itself then leads to nothing).
        const targets = [canonParent(p)];
        if (st.isSymbolicLink()) {
          try {
            targets[0] = realpathSync(p);
          } catch {
            continue;
          }
        }
        for (const t of targets) {
          if (seen.has(t) || !existsSync(R(t))) continue; // not visible in this world anyway
          seen.add(t);
          try {
            const isDir = lstatSync(t).isDirectory();
            const dst = targetFd(rootFd, t, isDir ? "dir" : "file");
            try {
              if (isDir) {
                mount("tmpfs", `/proc/self/fd/${dst}`, "tmpfs", MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC, `mode=0700,size=4k,nr_inodes=16${owner}`);
              } else {
                if (!existsSync(empty)) {
                  mkdirSync(emptyDir, { recursive: true });
                  mount("tmpfs", emptyDir, "tmpfs", MS.NOSUID | MS.NODEV | MS.NOEXEC, "mode=0755,size=4k,nr_inodes=4");
                  writeFileSync(empty, "");
                  chmodSync(empty, 0o600);
                  if (who) chownSync(empty, who.uid, who.gid);
                }
                const src = openFollow(empty, false);
                try {
                  bindFd(src, dst, true, false);
                } finally {
                  closeSync(src);
                }
              }
            } finally {
              closeSync(dst);
            }
          } catch (e) {
            // Fail closed: a world that would show a secret is not started.
            throw new Error(`fs view: cannot hide ${t} (${errMsg(e)}); the world is not started rather than show it`);
          }
        }
      }
    }

    // ---- always read-only inside writable areas
    const areas = writableAreas(o, res);
    const protect: string[] = [];
    for (const pat of o.plan.readOnly)
      for (const raw of expandGlob(pat)) {
        const p = canonParent(raw);
        if (areas.some((a) => inside(a, p) && a !== p)) protect.push(p);
      }
    const done = new Set<string>();
    for (const p of protect) {
      if (done.has(p)) continue;
      done.add(p);
      const area = areas.find((a) => inside(a, p))!;
      try {
        let st = lstatOrNull(R(p));
        if (st?.isDirectory() && inside(o.project, p) && FILE_ONLY.has(relative(o.project, p))) continue;
        if (st?.isSymbolicLink()) {
          res.warnings.push(`read-only ${p}: a symlink (the link itself cannot be pinned); its target is protected when inside a writable area`);
          const t = realpathOrNull(R(p));
          if (t && inside(o.root, t)) {
            const inWorld = `/${relative(o.root, t)}`;
            if (areas.some((a) => inside(a, inWorld)) && !done.has(inWorld)) protect.push(inWorld);
          }
          continue;
        }
        // Pin every directory between the writable area and the path: a mount point cannot
        // be renamed or removed (EBUSY), so `mv .git x` cannot carry the protection away.
        const between = relative(area, dirname(p)).split("/").filter(Boolean);
        let cur = area;
        for (const c of between) {
          cur = join(cur, c);
          if (done.has(`pin:${cur}`)) continue;
          done.add(`pin:${cur}`);
          if (!lstatOrNull(R(cur))?.isDirectory()) break;
          const fd = targetFd(rootFd, cur, "dir");
          try {
            bindFd(fd, fd, false, true);
          } finally {
            closeSync(fd);
          }
        }
        if (!st) {
          const rel = relative(o.project, p);
          const parent = lstatOrNull(R(dirname(p)));
          if (o.projectOverlay || !PLACEHOLDER_DIRS.includes(rel) || !parent?.isDirectory()) continue;
          // Created as the parent's owner, through an fd (no symlink followed).
          const pfd = targetFd(rootFd, dirname(p), "dir");
          try {
            const owner = fstatSync(pfd);
            const who = { uid: owner.uid, gid: owner.gid, groups: [owner.gid], root: owner.uid === 0 };
            try {
              asCaller(who, () => mkdirAt(pfd, rel.split("/").pop()!, 0o755));
            } catch (e) {
              // Not as its owner (e.g. unmapped in this user namespace): left missing, said once.
              res.warnings.push(`read-only ${p}: no placeholder (${errMsg(e)}); a command that can write ${dirname(p)} could create it`);
              continue;
            }
          } finally {
            closeSync(pfd);
          }
          res.placeholders.push(p);
          st = lstatOrNull(R(p));
          if (!st) continue;
        }
        const fd = targetFd(rootFd, p, st.isDirectory() ? "dir" : "file");
        try {
          bindFd(fd, fd, true, true);
        } finally {
          closeSync(fd);
        }
      } catch (e) {
        // Fail closed: a writable hook or config would run code on the host later.
        throw new Error(`fs view: cannot make ${p} read-only (${errMsg(e)}); the world is not started rather than leave it writable`);
      }
    }
  } finally {
    closeSync(rootFd);
    if (existsSync(empty)) umount2(emptyDir, MNT_DETACH);
    if (existsSync(emptyDir)) rmdirSync(emptyDir);
  }
  if (o.placeholderFile && res.placeholders.length) {
    try {
      writeFileSync(o.placeholderFile, JSON.stringify(res.placeholders));
    } catch {}
  }
  lastRw = [...res.rw];
}

/** `p` with its parent resolved (host view); the last component as it is. */
export function canonParent(p: string): string {
  try {
    return join(realpathSync(dirname(p)), p.slice(p.lastIndexOf("/") + 1));
  } catch {
    return p;
  }
}

/**
 * Make `path` (the caller's passwd home) resolve in the world when its real path differs:
 * the first ancestor that is a symlink on the host and absent in the world is recreated there.
 */
export function mirrorSymlinkAncestors(root: string, path: string): void {
  const comps = path.split("/").filter(Boolean);
  let cur = "";
  for (const c of comps) {
    cur = `${cur}/${c}`;
    let st;
    try {
      st = lstatSync(cur);
    } catch {
      return;
    }
    if (!st.isSymbolicLink()) continue;
    if (lstatOrNull(join(root, cur))) return; // the world has something there already
    mkdirSync(dirname(join(root, cur)), { recursive: true });
    symlinkSync(readlinkSync(cur), join(root, cur));
    return;
  }
}

function lstatOrNull(p: string) {
  try {
    return lstatSync(p);
  } catch {
    return null;
  }
}
function realpathOrNull(p: string): string | null {
  try {
    return realpathSync(p);
  } catch {
    return null;
  }
}

/**
 * At world end (host side): remove the placeholder dirs this world created, when still empty
 * (rmdir never removes anything the user put there meanwhile).
 */
export function removePlaceholders(worldDir: string): void {
  let list: string[] = [];
  try {
    list = JSON.parse(readFileSync(join(worldDir, "placeholders.json"), "utf8")) as string[];
  } catch {
    return;
  }
  for (const p of list) {
    try {
      if (lstatSync(p).isDirectory() && readdirSync(p).length === 0) Bun.spawnSync(["rmdir", "--", p]);
    } catch {}
  }
}
