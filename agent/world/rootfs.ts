/**
 * Builds a world's root filesystem inside the world's private mount namespace, then
 * pivot_roots into it. Runs in the spawner (already inside `unshare --mount --pid ...`).
 *
 * Layout: a small tmpfs root (read-only once built) holding read-only binds of the
 * system dirs, the project read-write (nosuid,nodev) at its host path (or an overlay for
 * isolated worlds), a fresh /proc for the world's PID namespace, a minimal /dev with its own
 * devpts instance, a read-only /sys with the world's own cgroups, one bounded scratch tmpfs
 * for /tmp, /var/tmp, /run (and /root without a caller home), /dev/shm, and the policy's
 * fs view (fsview.ts: the caller's home read-only minus secrets, `fs.write` binds, the
 * always-read-only paths). docs/WORLD.md "What a command sees".
 *
 * Traps:
 * - A read-only bind needs a second mount call: MS_BIND ignores MS_RDONLY on the first.
 * - Debian 12 has merged /usr: /bin, /lib, /lib64, /sbin are symlinks; recreate them as
 *   symlinks, binding them would follow the link and duplicate /usr.
 * - The old root must be detached (MNT_DETACH) after pivot_root or host mounts stay
 *   reachable through it.
 */
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readlinkSync, realpathSync, rmdirSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { chdir, mount, MNT_DETACH, MS, pivotRoot, umount2 } from "../../src/sys/libc.ts";
import type { Caller, FsView } from "../../src/contract/world.ts";
import { expandGlob, mirrorSymlinkAncestors, mountHidesAndProtected, mountHomeAndWrites, mountScratch, mountSys, planFsView, scratchBytes, type FsViewResult } from "./fsview.ts";

export interface RootfsOptions {
  /** Empty host directory the tmpfs root is mounted on (visible only in this mount ns). */
  root: string;
  /** Host project dir; appears at the same path inside the world. */
  project: string;
  /** Project read-only (world_fs_mode=read_only). */
  projectReadOnly?: boolean;
  /** Instead of a bind, mount this overlay on the project path (isolated worlds). */
  projectOverlay?: (target: string) => void;
  /** A file bind-mounted over /etc/resolv.conf (pinned DNS). */
  resolvConf?: string;
  /** Extra read-only binds (host path, same path inside). */
  extraRo?: string[];
  /** Issue 13: who the world belongs to (HOME, `fs.write` resolved as this user). */
  caller?: Caller;
  /** Issue 13: the policy's fs view (absent: FsView defaults). */
  fsView?: FsView;
  /** Host file recording placeholder dirs created for protected names (fsview.ts). */
  placeholderFile?: string;
  /** LEAD: the agent's own paths, always hidden (FsViewPlanInput.hide). */
  hide?: string[];
  /** LEAD (issue 14.2): files written into the root tmpfs (read-only once built), e.g. cmdexec.ts's helper. */
  files?: { path: string; data: Uint8Array; mode: number }[];
}

export interface RootfsResult {
  /** In-world paths made writable by `fs.write` (Landlock's rw list adds them). */
  rw: string[];
  /** One line per fs-view entry that could not be applied as asked. */
  warnings: string[];
}

/** System directories made visible read-only (world_fs_isolation = "workspace"). */
export const SYSTEM_DIRS = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt"];

/**
 * Top-level host dirs never bound into a world, even with world_fs_isolation = "full": the
 * world gets its own /proc, /dev, /tmp, /run, /root; /sys and /boot expose the host kernel;
 * /lost+found and mount points of other filesystems add nothing a command needs.
 */
const NEVER_BOUND = new Set(["/proc", "/sys", "/dev", "/run", "/tmp", "/root", "/boot", "/lost+found", "/var/tmp"]);

/** world_fs_isolation = "full": every other top-level host dir, read-only. */
export function fullHostDirs(): string[] {
  return readdirSync("/")
    .map((n) => `/${n}`)
    .filter((d) => !NEVER_BOUND.has(d) && !SYSTEM_DIRS.includes(d));
}
const DEV_NODES = ["null", "zero", "full", "random", "urandom", "tty"];

function bindRo(src: string, dst: string, isFile = false): void {
  if (isFile) {
    mkdirSync(dirname(dst), { recursive: true });
    if (!existsSync(dst)) writeFileSync(dst, "");
  } else mkdirSync(dst, { recursive: true });
  mount(src, dst, null, MS.BIND | MS.REC);
  mount("none", dst, null, MS.REMOUNT | MS.BIND | MS.RDONLY | MS.NOSUID | MS.NODEV);
}

function tmpfs(dst: string, opts: string, flags: bigint = MS.NOSUID | MS.NODEV): void {
  mkdirSync(dst, { recursive: true });
  mount("tmpfs", dst, "tmpfs", flags, opts);
}

export function buildRootfs(o: RootfsOptions): RootfsResult {
  // Nothing we mount may propagate back to the host (unshare set this too; be sure).
  mount("none", "/", null, MS.REC | MS.PRIVATE);
  mount("tmpfs", o.root, "tmpfs", MS.NOSUID | MS.NODEV, "mode=0755,size=64m");
  const R = (p: string) => join(o.root, p);
  // The caller's home at its real path (mounts need symlink-free targets); its passwd path is
  // made to resolve there below (HOME in the world stays the passwd path).
  const caller = o.caller && o.caller.home !== "/" && existsSync(o.caller.home) ? { ...o.caller, home: realpathSync(o.caller.home) } : o.caller;
  const plan = planFsView({ view: o.fsView, caller, project: o.project, projectReadOnly: o.projectReadOnly, ...(o.hide ? { hide: o.hide } : {}) });
  const res: FsViewResult = { rw: [], placeholders: [], warnings: [...plan.notes] };

  const ro = [...SYSTEM_DIRS, ...(o.extraRo ?? []), ...(plan.fullRead ? fullHostDirs() : []), ...plan.read.flatMap((p) => expandGlob(p))];
  // Shortest first: a dir already visible through a parent's bind is not bound again.
  for (const dir of [...new Set(ro)].sort((a, b) => a.split("/").length - b.split("/").length)) {
    let st;
    try {
      st = lstatSync(dir);
    } catch {
      continue;
    }
    if (existsSync(R(dir)) || lstatOrNull(R(dir))) continue; // already visible (a parent's bind or a symlink)
    if (st.isSymbolicLink()) {
      mkdirSync(dirname(R(dir)), { recursive: true });
      symlinkSync(readlinkSync(dir), R(dir));
    } else if (st.isDirectory()) bindRo(dir, R(dir));
    else if (st.isFile()) bindRo(dir, R(dir), true);
  }

  // /proc of the world's own PID namespace.
  mkdirSync(R("/proc"), { recursive: true });
  mount("proc", R("/proc"), "proc", MS.NOSUID | MS.NODEV | MS.NOEXEC);

  // Minimal /dev: a few character devices, our own devpts instance, shm.
  tmpfs(R("/dev"), "mode=0755,size=64k", MS.NOSUID);
  for (const n of DEV_NODES) {
    if (!existsSync(`/dev/${n}`)) continue;
    writeFileSync(R(`/dev/${n}`), "");
    mount(`/dev/${n}`, R(`/dev/${n}`), null, MS.BIND);
  }
  mkdirSync(R("/dev/pts"), { recursive: true });
  mount("devpts", R("/dev/pts"), "devpts", MS.NOSUID | MS.NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
  symlinkSync("pts/ptmx", R("/dev/ptmx"));
  symlinkSync("/proc/self/fd", R("/dev/fd"));
  symlinkSync("/proc/self/fd/0", R("/dev/stdin"));
  symlinkSync("/proc/self/fd/1", R("/dev/stdout"));
  symlinkSync("/proc/self/fd/2", R("/dev/stderr"));
  tmpfs(R("/dev/shm"), "mode=1777,size=64m");

  // Read-only /sys; /sys/fs/cgroup is the world's own cgroup (issue 13).
  mountSys(o.root, res.warnings);

  // Writable scratch space that dies with the world: ONE tmpfs of half the world's memory
  // limit (its pages are charged to the world's cgroup too) for all scratch dirs (issue 18.7).
  mountScratch(o.root, scratchBytes(o.root), plan.home === undefined);
  // Issue 18.1b (DEPLOY, additive): extra read-only paths under a scratch dir (the stage-2 binary
  // of an agent run from a checkout under /tmp, e.g. a `mktemp -d` clone) were hidden by the
  // scratch mounts just made, and stage 1's execve failed: bind them again on top.
  for (const p of new Set(o.extraRo ?? [])) {
    if (!/^\/(tmp|var\/tmp|run|root)(\/|$)/.test(p)) continue;
    const st = lstatOrNull(p);
    if (st && !st.isSymbolicLink() && (st.isDirectory() || st.isFile())) bindRo(p, R(p), st.isFile());
  }

  // The caller's home read-only and the policy's `fs.write` binds, after the scratch mounts so
  // they win over them (a home under /tmp), before the project (which wins over both).
  mountHomeAndWrites({ root: o.root, plan, caller, project: o.project, projectReadOnly: o.projectReadOnly }, res);
  if (o.caller && caller && caller.home !== o.caller.home) mirrorSymlinkAncestors(o.root, o.caller.home);

  // The project last, so it wins over scratch mounts when it lives under /tmp or /root.
  // nosuid,nodev (issue 14.3): a setuid copy or device node made in the project grants nothing.
  const proj = R(o.project);
  mkdirSync(proj, { recursive: true });
  if (o.projectOverlay) o.projectOverlay(proj);
  else {
    mount(o.project, proj, null, MS.BIND | MS.REC);
    mount("none", proj, null, MS.REMOUNT | MS.BIND | MS.NOSUID | MS.NODEV | (o.projectReadOnly ? MS.RDONLY : 0n));
  }

  // Secrets hidden, then the always-read-only paths inside every writable area.
  mountHidesAndProtected(
    { root: o.root, plan, caller, project: o.project, projectReadOnly: o.projectReadOnly, projectOverlay: o.projectOverlay !== undefined, placeholderFile: o.placeholderFile },
    res,
  );

  if (o.resolvConf) {
    mount(o.resolvConf, R("/etc/resolv.conf"), null, MS.BIND);
    mount("none", R("/etc/resolv.conf"), null, MS.REMOUNT | MS.BIND | MS.RDONLY);
  }
  try {
    rmdirSync(R("/.scratch"));
  } catch {}

  // Our own files (the per-command exec helper): in the root tmpfs, sealed read-only below.
  for (const f of o.files ?? []) {
    mkdirSync(dirname(R(f.path)), { recursive: true, mode: 0o755 });
    writeFileSync(R(f.path), f.data, { mode: f.mode });
    chmodSync(R(f.path), f.mode); // not narrowed by the umask
  }

  // Switch roots and forget the host's.
  mkdirSync(R("/.oldroot"), { recursive: true });
  pivotRoot(o.root, R("/.oldroot"));
  chdir("/");
  umount2("/.oldroot", MNT_DETACH);
  rmdirSync("/.oldroot");
  // The root tmpfs itself becomes read-only: writes outside the project and scratch fail.
  mount("none", "/", null, MS.REMOUNT | MS.RDONLY | MS.NOSUID | MS.NODEV, "mode=0755");
  return { rw: res.rw, warnings: res.warnings };
}

function lstatOrNull(p: string) {
  try {
    return lstatSync(p);
  } catch {
    return null;
  }
}
