/**
 * Landlock filesystem sandbox: write access only beneath the listed paths, read/execute
 * everywhere else. Applied once in the world spawner; every command inherits the domain.
 *
 * Rights by ABI (each newer ABI adds a right; handling a right the kernel does not know is
 * EINVAL, so the handled set is masked by the running ABI):
 *   1: exec, write_file, read_file, read_dir, remove_dir/file, make_char/dir/reg/sock/fifo/block/sym
 *   2: REFER (rename/link across directories; without it such renames are always denied)
 *   3: TRUNCATE (truncate(2)/O_TRUNC were unrestricted before)
 *   4: TCP bind/connect (not handled here: egress is nftables' job)
 *   5: IOCTL_DEV (ioctl on device files; rw paths get it so terminals under /dev/pts work)
 *   6: scopes: abstract unix sockets and signals cannot reach processes outside the domain
 *   7: audit logging flags (nothing to do)
 *
 * Traps:
 * - Rules attach to inodes (through an O_PATH fd), not to path strings: a bind mount of the
 *   same directory is covered too; paths that do not exist are skipped and reported.
 * - A rule on a non-directory may only carry file rights (exec, read, write, truncate,
 *   ioctl_dev), otherwise EINVAL.
 * - Files opened BEFORE restrict_self keep full access (rights are checked at open time).
 *   The spawner's control socket and any pre-opened fds keep working; but anything the
 *   spawner must create later (sockets, files) has to live under an rw path.
 * - landlock_restrict_self applies to the calling thread only (ABI 7 has no TSYNC); that is
 *   the JS thread which forks commands, so every command is inside the domain.
 * - procfs is a filesystem like any other: after this, nobody in the world can write
 *   /proc/self/* or /proc/sys/* unless /proc is listed rw (it must not be).
 */
import { existsSync, statSync } from "node:fs";
import { ptr } from "bun:ffi";
import { NR, SyscallError, closeFd, errno, openPath, sys } from "../../src/sys/libc.ts";

const FS = {
  EXECUTE: 1n << 0n,
  WRITE_FILE: 1n << 1n,
  READ_FILE: 1n << 2n,
  READ_DIR: 1n << 3n,
  REMOVE_DIR: 1n << 4n,
  REMOVE_FILE: 1n << 5n,
  MAKE_CHAR: 1n << 6n,
  MAKE_DIR: 1n << 7n,
  MAKE_REG: 1n << 8n,
  MAKE_SOCK: 1n << 9n,
  MAKE_FIFO: 1n << 10n,
  MAKE_BLOCK: 1n << 11n,
  MAKE_SYM: 1n << 12n,
  REFER: 1n << 13n,
  TRUNCATE: 1n << 14n,
  IOCTL_DEV: 1n << 15n,
} as const;
const SCOPE_ABSTRACT_UNIX_SOCKET = 1n << 0n;
const SCOPE_SIGNAL = 1n << 1n;

const FILE_RIGHTS = FS.EXECUTE | FS.WRITE_FILE | FS.READ_FILE | FS.TRUNCATE | FS.IOCTL_DEV;
const READ = FS.READ_FILE | FS.READ_DIR;

/** All fs rights known to `abi`. */
export function handledFsRights(abi: number): bigint {
  let r = (1n << 13n) - 1n; // ABI 1: bits 0..12
  if (abi >= 2) r |= FS.REFER;
  if (abi >= 3) r |= FS.TRUNCATE;
  if (abi >= 5) r |= FS.IOCTL_DEV;
  return r;
}

const LANDLOCK_CREATE_RULESET_VERSION = 1n;
const LANDLOCK_RULE_PATH_BENEATH = 1n;

/** The Landlock ABI of the running kernel, or null when Landlock is absent/disabled. */
export function landlockAbi(): number | null {
  const rc = sys(NR.landlock_create_ruleset, 0n, 0n, LANDLOCK_CREATE_RULESET_VERSION);
  return rc > 0 ? rc : null;
}

export interface LandlockPaths {
  /** Full access beneath these (project/merged dir, world /tmp, needed /dev nodes). */
  rw: string[];
  /** Read-only (no exec). */
  ro?: string[];
  /** Read + execute. Default when both ro and rx are absent: ["/"]. */
  rx?: string[];
  /** ABI >= 6: confine abstract unix sockets and signals to the domain. Default true. */
  scoped?: boolean;
  /**
   * Behave as if the kernel had this (lower) ABI: handle only the rights it knows. For tests
   * of the older-kernel paths on a new kernel, and to pin behaviour across a fleet.
   */
  abi?: number;
}

export interface LandlockResult {
  abi: number;
  handled_fs: string;
  scoped: boolean;
  rules: { path: string; access: "rw" | "ro" | "rx" }[];
  skipped: string[];
}

export class LandlockUnavailable extends Error {
  constructor() {
    super(
      "Landlock is not available on this kernel (needs Linux >= 5.13 with CONFIG_SECURITY_LANDLOCK " +
        'and "landlock" in the lsm= boot parameter); writes inside the world are then bounded only by mounts',
    );
    this.name = "LandlockUnavailable";
  }
}

/** Restrict the calling thread (and all its future children) to the given paths. */
export function applyLandlock(paths: LandlockPaths): LandlockResult {
  const kernelAbi = landlockAbi();
  if (kernelAbi === null) throw new LandlockUnavailable();
  const abi = Math.min(kernelAbi, paths.abi ?? kernelAbi);
  const handled = handledFsRights(abi);
  const scoped = (paths.scoped ?? true) && abi >= 6;

  // struct landlock_ruleset_attr { u64 handled_access_fs; u64 handled_access_net; u64 scoped; }
  // The kernel accepts a larger struct than it knows as long as the extra bytes are zero.
  const attr = new Uint8Array(24);
  const adv = new DataView(attr.buffer);
  adv.setBigUint64(0, handled, true);
  if (scoped) adv.setBigUint64(16, SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL, true);
  const attrSize = abi >= 6 ? 24 : abi >= 4 ? 16 : 8;
  const rulesetFd = sys(NR.landlock_create_ruleset, BigInt(ptr(attr)), BigInt(attrSize), 0n);
  if (rulesetFd < 0) throw new SyscallError("landlock_create_ruleset", errno());

  const result: LandlockResult = { abi, handled_fs: `0x${handled.toString(16)}`, scoped, rules: [], skipped: [] };
  try {
    const rx = paths.rx ?? (paths.ro === undefined ? ["/"] : []);
    const groups: [LandlockResult["rules"][number]["access"], string[], bigint][] = [
      ["rx", rx, READ | FS.EXECUTE],
      ["ro", paths.ro ?? [], READ],
      ["rw", paths.rw, handled],
    ];
    // struct landlock_path_beneath_attr { u64 allowed_access; s32 parent_fd; } __packed (12 bytes)
    const rule = new Uint8Array(12);
    const rdv = new DataView(rule.buffer);
    for (const [access, list, rights] of groups) {
      for (const path of list) {
        if (!existsSync(path)) {
          result.skipped.push(path);
          continue;
        }
        const isDir = statSync(path).isDirectory();
        const allowed = (isDir ? rights : rights & FILE_RIGHTS) & handled;
        const fd = openPath(path);
        try {
          rdv.setBigUint64(0, allowed, true);
          rdv.setInt32(8, fd, true);
          const rc = sys(NR.landlock_add_rule, BigInt(rulesetFd), LANDLOCK_RULE_PATH_BENEATH, BigInt(ptr(rule)), 0n);
          if (rc < 0) throw new SyscallError(`landlock_add_rule ${path} (${access})`, errno());
        } finally {
          closeFd(fd);
        }
        result.rules.push({ path, access });
      }
    }
    const rc = sys(NR.landlock_restrict_self, BigInt(rulesetFd), 0n);
    if (rc < 0) throw new SyscallError("landlock_restrict_self (needs no_new_privs or CAP_SYS_ADMIN)", errno());
  } finally {
    closeFd(rulesetFd);
  }
  return result;
}
