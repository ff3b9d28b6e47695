/**
 * no_new_privs and capability dropping for the world spawner (inherited by every command).
 *
 * Traps:
 * - For uid 0 the kernel recomputes capabilities at execve: permitted' = inheritable | bounding
 *   (root's "file capabilities" are all set). So the BOUNDING set is what limits root's
 *   children; clearing only effective/permitted would be undone by the next exec. We drop the
 *   bounding set first (needs CAP_SETPCAP), clear the ambient set, then capset.
 * - Credentials are per thread. These calls affect the calling (JS) thread, which is the one
 *   Bun.spawn forks from, so commands inherit them; Bun's helper threads keep theirs (they run
 *   no user code). Seccomp is applied with TSYNC and is process-wide.
 * - Default kept set (Docker-like, minus NET_RAW, MKNOD, FSETID, SETFCAP and KILL): root in the
 *   world must still be able to write project files owned by the user (DAC_OVERRIDE, FOWNER,
 *   CHOWN); Landlock decides WHERE writes may happen. CAP_SYS_ADMIN, SYS_PTRACE, NET_ADMIN,
 *   SYS_MODULE, ... go. Issue 14.3: FSETID and SETFCAP let root in a world leave a setuid or
 *   file-capability binary in the project (a host backdoor once the world is gone); KILL let it
 *   signal Substrate's helpers running under other uids (then dnsmasq; now the egress helper, outside the world's PID namespace anyway). Only a uid-0 caller has any
 *   of these: other callers' worlds run as the caller, with no capabilities at all.
 *   Because the kept set is not a superset of a host root process's caps, the kernel's
 *   ptrace check (cap_ptrace_access_check) refuses ptrace of host processes even in baseline.
 */
import { readFileSync } from "node:fs";
import { ptr } from "bun:ffi";
import { NR, PR, SyscallError, errno, prctl, sys } from "../../src/sys/libc.ts";

export const CAP_NAMES = [
  "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
  "setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw",
  "ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
  "sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod",
  "lease", "audit_write", "audit_control", "setfcap", "mac_override", "mac_admin", "syslog",
  "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
] as const;

/** Kept by default in worlds (names without the CAP_ prefix, lower case). */
export const DEFAULT_KEEP_CAPS: readonly string[] = [
  "chown", "dac_override", "fowner", "setgid", "setuid", "setpcap",
  "net_bind_service", "sys_chroot", "audit_write",
];

function capNumber(name: string): number {
  const n = name.toLowerCase().replace(/^cap_/, "");
  const i = (CAP_NAMES as readonly string[]).indexOf(n);
  if (i < 0) throw new Error(`unknown capability "${name}" (expected e.g. "net_bind_service" or "CAP_CHOWN")`);
  return i;
}

export function lastCap(): number {
  try {
    return Number(readFileSync("/proc/sys/kernel/cap_last_cap", "utf8").trim());
  } catch {
    return CAP_NAMES.length - 1;
  }
}

export function setNoNewPrivs(): void {
  prctl(PR.SET_NO_NEW_PRIVS, 1n);
}
export function noNewPrivs(): boolean {
  return prctl(PR.GET_NO_NEW_PRIVS) === 1;
}

const PR_CAP_AMBIENT_CLEAR_ALL = 4n;
const LINUX_CAPABILITY_VERSION_3 = 0x20080522;

export interface CapDropResult {
  kept: string[];
  dropped: number;
  /** Bounding set after the drop, as in /proc/self/status CapBnd. */
  bounding: string;
}

/**
 * Drop every capability except `keep` from the bounding, ambient, inheritable, permitted
 * and effective sets of the calling thread.
 */
export function dropCapabilities(keep: readonly string[] = DEFAULT_KEEP_CAPS): CapDropResult {
  const keepNums = new Set(keep.map(capNumber));
  const last = lastCap();
  let dropped = 0;
  for (let c = 0; c <= last; c++) {
    if (keepNums.has(c)) continue;
    // CAPBSET_READ first: dropping an already-dropped cap is fine, but an unknown one is EINVAL.
    if (prctl(PR.CAPBSET_READ, BigInt(c)) === 1) {
      prctl(PR.CAPBSET_DROP, BigInt(c));
      dropped++;
    }
  }
  prctl(PR.CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL);

  // capset(header{version, pid=0}, data[2]{effective, permitted, inheritable})
  const hdr = new Uint8Array(8);
  new DataView(hdr.buffer).setUint32(0, LINUX_CAPABILITY_VERSION_3, true);
  const data = new Uint8Array(24);
  if (sys(NR.capget, BigInt(ptr(hdr)), BigInt(ptr(data))) < 0) throw new SyscallError("capget", errno());
  const dv = new DataView(data.buffer);
  let lo = 0;
  let hi = 0;
  for (const c of keepNums) {
    if (c < 32) lo |= 1 << c;
    else hi |= 1 << (c - 32);
  }
  for (const [i, mask] of [[0, lo], [1, hi]] as const) {
    const base = i * 12;
    const eff = dv.getUint32(base, true) & mask;
    const perm = dv.getUint32(base + 4, true) & mask;
    dv.setUint32(base, eff >>> 0, true);
    dv.setUint32(base + 4, perm >>> 0, true);
    dv.setUint32(base + 8, 0, true); // inheritable: none
  }
  new DataView(hdr.buffer).setUint32(0, LINUX_CAPABILITY_VERSION_3, true);
  if (sys(NR.capset, BigInt(ptr(hdr)), BigInt(ptr(data))) < 0) throw new SyscallError("capset", errno());

  const status = readFileSync("/proc/thread-self/status", "utf8");
  const bounding = /^CapBnd:\s*([0-9a-f]+)/m.exec(status)?.[1] ?? "";
  return { kept: [...keepNums].sort((a, b) => a - b).map((c) => CAP_NAMES[c] ?? String(c)), dropped, bounding };
}
