/**
 * Overlay isolation of the project for isolated worlds: the host project is the read-only
 * lower layer, every write lands in an upper dir on disk under
 * `/var/lib/substrate/overlay/<world_id>/{upper,work}`, which the agent (outside the world)
 * reads afterwards to compute the fs diff (fsdiff.ts) and to apply or discard it (apply.ts).
 *
 * Traps:
 * - upper and work must be on the same filesystem, and it must not be tmpfs: the spec wants the
 *   diff to survive on disk and a tmpfs upper would also eat RAM (prepareOverlayDirs refuses).
 * - `redirect_dir=off,metacopy=off,index=off`: with redirect_dir a renamed lower dir becomes an
 *   xattr pointer and metacopy makes chmod a metadata-only copy-up; both would make the upper
 *   dir unreadable without overlay internals. Off, a rename is copy + whiteout, a chmod copies
 *   the file up: the upper dir is a plain tree of changed entries plus whiteouts.
 * - Under a user namespace the kernel cannot write `trusted.*` xattrs: mount with `userxattr`
 *   and it uses `user.overlay.*` instead (fsdiff must then be told `userxattr: true`). The
 *   kernel rejects `userxattr` together with `redirect_dir=off`; we pass `redirect_dir=nofollow`
 *   then (no redirects created either way).
 * - Overlay option parsing splits on "," and ":": paths containing those (or "\") are refused
 *   here rather than mounting something else.
 * - The kernel overlay must be mounted inside the world's private mount namespace (never the
 *   host's): the spawner calls mountOverlay before pivot_root.
 */
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, rmSync, statfsSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { ENUM_PROBE_FILE, ENUM_PROBE_ID, type WorldFsStrategy } from "../../src/contract/doctor.ts";
import { fuseDeviceAvailable, fuseOverlayfsBinary, fuseOverlayfsOptions, mountFuseOverlay } from "../../src/sys/fuse_overlayfs.ts";
import { mount, MNT_DETACH, MS, SyscallError, umount2 } from "../../src/sys/libc.ts";
import { runShInPrivateMountNs } from "../../src/sys/unshare.ts";
import { collectChanges, writeMountRecord, type OverlayStrategy } from "./fsdiff.ts";

export const OVERLAY_BASE = "/var/lib/substrate/overlay";
const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

export class OverlayError extends Error {
  constructor(
    message: string,
    /** What the user can do about it. */
    readonly hint: string,
  ) {
    super(`${message} (${hint})`);
    this.name = "OverlayError";
  }
}

export interface OverlayDirs {
  /** `<base>/<world_id>`: discardOverlay removes it. */
  dir: string;
  upper: string;
  work: string;
}

const SAFE_ID = /^[A-Za-z0-9_.-]+$/;

/**
 * Creates `<baseDir>/<worldId>/{upper,work}` (0700 dir: the upper dir holds the world's
 * output, possibly secrets). Refuses tmpfs/ramfs: the spec wants upper/work on disk.
 *
 * `owner`: the host uid/gid that is root inside the world's user namespace (userns.ts
 * `IdMap.rootUid/rootGid`). The kernel checks the mounter's access to upper/work, so under a
 * user namespace they (and the 0700 world dir) must belong to world root; the base dir is then
 * 0711 so world root can traverse it without listing other worlds.
 */
export function prepareOverlayDirs(
  worldId: string,
  baseDir: string = OVERLAY_BASE,
  owner?: { uid: number; gid: number },
): OverlayDirs {
  if (!SAFE_ID.test(worldId) || worldId === "." || worldId === "..") {
    throw new OverlayError(`invalid world id for an overlay dir: ${JSON.stringify(worldId)}`, "use an id like wld_<uuidv7>");
  }
  mkdirSync(baseDir, { recursive: true, mode: 0o711 });
  const fsType = statfsSync(baseDir).type;
  if (fsType === TMPFS_MAGIC || fsType === RAMFS_MAGIC) {
    throw new OverlayError(
      `${baseDir} is on tmpfs/ramfs; overlay upper/work must be on a disk filesystem`,
      `mount a disk-backed directory at ${baseDir}`,
    );
  }
  const dir = join(baseDir, worldId);
  const upper = join(dir, "upper");
  const work = join(dir, "work");
  mkdirSync(dir, { mode: 0o700 });
  mkdirSync(upper, { mode: 0o755 });
  mkdirSync(work, { mode: 0o700 });
  if (owner !== undefined) {
    if ((statSync(baseDir).mode & 0o001) === 0) chmodSync(baseDir, 0o711);
    for (const d of [dir, upper, work]) chownSync(d, owner.uid, owner.gid);
  }
  return { dir, upper, work };
}

export interface OverlayMountSpec {
  lower: string;
  upper: string;
  work: string;
  target: string;
  /**
   * Store overlay xattrs in `user.overlay.*` (needed under a user namespace). Unset: true when
   * the caller runs inside a user namespace, detected from /proc/self/uid_map.
   */
  userxattr?: boolean;
  /** "auto" (default): kernel overlay, fuse-overlayfs when the kernel one cannot be mounted. */
  strategy?: OverlayStrategy | "auto";
}

const BAD_PATH = /[,:\\\n]/;

/** Kernel overlay `data` string; shared by mountOverlay and the probe. */
export function overlayMountData(m: Pick<OverlayMountSpec, "lower" | "upper" | "work" | "userxattr">): string {
  for (const p of [m.lower, m.upper, m.work]) {
    if (BAD_PATH.test(p)) {
      throw new OverlayError(`overlay path ${JSON.stringify(p)} contains ',', ':', '\\' or a newline`, "move the project to a path without those characters");
    }
  }
  // With userxattr the kernel refuses redirect_dir=off ("conflicting options", measured on
  // 6.18): it only accepts nofollow there, which equally never creates redirects.
  const redirect = m.userxattr ? "redirect_dir=nofollow" : "redirect_dir=off";
  const opts = [`lowerdir=${m.lower}`, `upperdir=${m.upper}`, `workdir=${m.work}`, redirect, "metacopy=off", "index=off"];
  if (m.userxattr) opts.push("userxattr");
  return opts.join(",");
}

/**
 * Mounts the project overlay on `target`. Call it INSIDE the world's private mount namespace
 * (the spawner, before pivot_root; e.g. as rootfs.ts's `projectOverlay` callback). Synchronous.
 * Returns the strategy used and records it (with userxattr) in `<dir>/mount.json`, which
 * overlayDiff/applyDiff read when not told explicitly.
 */
export function mountOverlay(spec: OverlayMountSpec): OverlayStrategy {
  // userxattr unset: decide from where we run. Inside a user namespace the kernel cannot
  // write trusted.* xattrs, and the mount would fail (or lose opaque markers) without it.
  const m = { ...spec, userxattr: spec.userxattr ?? inUserNamespace() };
  // The merged root takes the UPPER dir's owner and mode, not the project's: an upper made by
  // root (0755) left a non-root caller unable to create anything at the project's top level
  // (issue 13). Mirror the project root onto it before mounting.
  try {
    const st = statSync(m.lower);
    chownSync(m.upper, st.uid, st.gid);
    chmodSync(m.upper, st.mode & 0o7777);
  } catch {}
  const s = mountOverlayOnly(m);
  writeMountRecord(m.upper, { strategy: s, userxattr: s === "overlay" && m.userxattr });
  return s;
}

/** True when this process is not in the initial user namespace (its uid map is not identity). */
export function inUserNamespace(): boolean {
  try {
    const map = readFileSync("/proc/self/uid_map", "utf8").trim().split(/\s+/);
    return !(map.length === 3 && map[0] === "0" && map[1] === "0" && map[2] === "4294967295");
  } catch {
    return false;
  }
}

function mountOverlayOnly(m: OverlayMountSpec): OverlayStrategy {
  const strategy = m.strategy ?? "auto";
  let kernelError: string | null = null;
  if (strategy !== "fuse") {
    try {
      // nosuid/nodev: a setuid file or a device node the world creates in its own upper dir
      // must not become a privilege inside the world either.
      mount("overlay", m.target, "overlay", MS.NOSUID | MS.NODEV, overlayMountData(m));
      return "overlay";
    } catch (e) {
      if (!(e instanceof SyscallError) || strategy === "overlay") throw e;
      kernelError = e.message;
    }
  }
  try {
    mountFuseOverlay({ lower: m.lower, upper: m.upper, work: m.work, target: m.target });
    return "fuse";
  } catch (e) {
    if (kernelError === null) throw e;
    throw new OverlayError(
      `cannot mount the project overlay: kernel overlay: ${kernelError}; fuse-overlayfs: ${(e as Error).message}`,
      "enable overlayfs (modprobe overlay) or install fuse-overlayfs with /dev/fuse available; `substrate world doctor` shows the probe",
    );
  }
}

/** Unmounts an overlay mounted by mountOverlay (kernel or fuse: root can umount both). */
export function unmountOverlay(target: string, lazy = false): void {
  umount2(target, lazy ? MNT_DETACH : 0);
}

// ---------------------------------------------------------------------------------------------
// enumeration_v1 probe (DS0: world_fs_strategy)

export interface FsStrategyAttempt {
  strategy: OverlayStrategy;
  ok: boolean;
  error: string | null;
}

export interface FsStrategyProbe {
  /** The DS0 block, byte for byte (`WorldDoctorReportV1.world_fs_strategy`). */
  world_fs_strategy: WorldFsStrategy;
  /** Which strategy passed (what isolated worlds will use); null when none did. */
  active: OverlayStrategy | null;
  attempts: FsStrategyAttempt[];
}

const LOWER_MARKER = "substrate_lower_marker";

// $1..$4 = lower upper work merged, $5 = the mount data string (never interpolated).
const PROBE_MOUNT: Record<OverlayStrategy, string> = {
  overlay: 'mount -t overlay overlay -o "$5" "$4"',
  fuse: 'fuse-overlayfs -o "$5" "$4"',
};

async function probeOne(s: OverlayStrategy, base: string): Promise<string | null> {
  const dirs = ["lower", "upper", "work", "merged"].map((d) => join(base, s, d));
  const [lower, upper, work, merged] = dirs as [string, string, string, string];
  for (const d of dirs) mkdirSync(d, { recursive: true });
  writeFileSync(join(lower, LOWER_MARKER), "lower\n");
  if (s === "fuse") {
    if (fuseOverlayfsBinary() === null) return "fuse-overlayfs not found on PATH";
    if (!fuseDeviceAvailable()) return "/dev/fuse is missing";
  }
  // The same option string the world mounts with.
  const data = s === "overlay" ? overlayMountData({ lower, upper, work }) : fuseOverlayfsOptions({ lower, upper, work });
  const script = [
    "set -e",
    PROBE_MOUNT[s],
    `trap 'umount "$4" 2>/dev/null || umount -l "$4" 2>/dev/null || true' EXIT`,
    `: > "$4/${ENUM_PROBE_FILE}"`,
    'ls -A1 "$4"',
  ].join("\n");
  const r = await runShInPrivateMountNs(script, [lower, upper, work, merged, data], { timeoutMs: 15_000 });
  if (r.signal !== null) return `${s}: probe killed by ${r.signal}`;
  if (r.code !== 0) return `${s}: mount/probe failed (exit ${r.code}): ${r.stderr.trim() || "no stderr"}`;
  const names = new Set(r.stdout.split("\n").filter((l) => l !== ""));
  if (!names.has(ENUM_PROBE_FILE)) return `${s}: ${ENUM_PROBE_FILE} created through the merged dir but missing from its enumeration`;
  if (!names.has(LOWER_MARKER)) return `${s}: lower-layer entry missing from the merged enumeration`;
  // The diff reads the upper dir: the probe file must show up there, as exactly one write.
  const changes = collectChanges(upper, lower, { strategy: s });
  if (changes.length !== 1 || changes[0]?.kind !== "write" || changes[0].path !== ENUM_PROBE_FILE) {
    return `${s}: upper dir diff is ${JSON.stringify(changes.map((c) => [c.kind, c.path]))}, expected one write of ${ENUM_PROBE_FILE}`;
  }
  return null;
}

/**
 * DS0 `enumeration_v1`: for each strategy (kernel overlay, then fuse-overlayfs), mount a real
 * overlay in a throw-away private mount + PID namespace, with upper/work under `baseDir` (the
 * filesystem worlds really use), create `.substrate_enum_probe` through the merged dir, check
 * readdir of the merged dir lists it next to a lower entry, and that the upper-dir diff reports
 * exactly that write. Stops at the first strategy that passes. Cleans up its dirs; the
 * namespace takes the mount with it.
 */
export async function probeFsStrategy(
  opts: { baseDir?: string; strategies?: OverlayStrategy[] } = {},
): Promise<FsStrategyProbe> {
  const baseDir = opts.baseDir ?? OVERLAY_BASE;
  // A base dir that real worlds could not use is a probe failure (a fact for doctor), not an
  // internal error: unwritable, or on tmpfs (prepareOverlayDirs refuses it).
  const baseProblem = checkBaseDir(baseDir);
  if (baseProblem !== null) return probeResult([], baseProblem);
  const dir = join(baseDir, `probe-${Bun.randomUUIDv7()}`);
  mkdirSync(dir, { mode: 0o700 });
  const attempts: FsStrategyAttempt[] = [];
  try {
    for (const s of opts.strategies ?? ["overlay", "fuse"]) {
      let err: string | null;
      try {
        err = await probeOne(s, dir);
      } catch (e) {
        err = `${s}: ${(e as Error).message}`;
      }
      attempts.push({ strategy: s, ok: err === null, error: err });
      if (err === null) break;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return probeResult(attempts, null);
}

function checkBaseDir(baseDir: string): string | null {
  try {
    mkdirSync(baseDir, { recursive: true, mode: 0o700 });
    const t = statfsSync(baseDir).type;
    if (t === TMPFS_MAGIC || t === RAMFS_MAGIC) {
      return `overlay base ${baseDir} is on tmpfs/ramfs; upper/work must be on a disk filesystem`;
    }
    return null;
  } catch (e) {
    return `overlay base ${baseDir} unusable: ${(e as Error).message}`;
  }
}

function probeResult(attempts: FsStrategyAttempt[], baseProblem: string | null): FsStrategyProbe {
  const passed = baseProblem === null ? attempts.find((a) => a.ok) : undefined;
  return {
    world_fs_strategy: {
      primary: "overlay",
      fallback: "fuse",
      probe: {
        id: ENUM_PROBE_ID,
        probe_file: ENUM_PROBE_FILE,
        result: passed ? "pass" : "fail",
        failure_reason: passed ? null : (baseProblem ?? (attempts.map((a) => a.error).join("; ") || "no strategy probed")),
      },
    },
    active: passed?.strategy ?? null,
    attempts,
  };
}

/** Lists leftover overlay dirs (world ids) under baseDir, for garbage collection. */
export function listOverlayDirs(baseDir: string = OVERLAY_BASE): string[] {
  try {
    return readdirSync(baseDir).filter((n) => SAFE_ID.test(n)).sort();
  } catch {
    return [];
  }
}

export const overlayDirFor = (worldId: string, baseDir: string = OVERLAY_BASE): string => resolve(baseDir, worldId);
