/**
 * Seccomp filter for world processes, built in TypeScript as classic BPF (no libseccomp).
 *
 * Spec ("Seccomp (Initial posture)"):
 * - `baseline` (session worlds): default allow, `SECCOMP_RET_LOG` for the risky syscalls
 *   mount umount2 pivot_root keyctl perf_event_open bpf. Where the kernel lacks the `log`
 *   action (see /proc/sys/kernel/seccomp/actions_avail) they are allowed silently.
 * - `isolated`: the same syscalls return EPERM, plus namespace-creating clone/unshare, setns,
 *   the new mount API (open_tree, move_mount, fsopen, fsconfig, fsmount, fspick,
 *   mount_setattr), io_uring_* (EPERM) and clone3 (ENOSYS).
 * - both: io_uring_* → EPERM (its operations bypass this filter).
 * - both (issue 14.1): ptrace, process_vm_readv/writev, pidfd_getfd → EPERM, and no signal
 *   or prlimit aimed at PID 1 or the spawner (see SeccompOptions.protectPids).
 *
 * Traps worth knowing:
 * - The arch check comes first: on x86_64 a process can enter the kernel through the i386
 *   (`int 0x80`) or x32 ABIs, whose syscall numbers differ — a filter that only matches
 *   x86_64 numbers would let a 32-bit `mount` through. Foreign arch / x32 numbers get
 *   ENOSYS in isolated mode and LOG in baseline mode.
 * - clone3 passes its flags in a struct in memory, which BPF cannot read, so it cannot be
 *   filtered by flags: it gets ENOSYS and glibc (pthread_create, posix_spawn) falls back to
 *   clone(2), whose flags ARE in a register. Bun creates its threads with clone3 (strace) and
 *   keeps working after the fallback; Bun.spawn uses vfork (no flags to filter).
 * - CLONE_NEWTIME (0x80) is only a namespace flag for unshare/clone3; in clone(2) the low
 *   byte is the exit signal, so the clone mask leaves it out.
 * - Filters are applied with SECCOMP_FILTER_FLAG_TSYNC so every thread of the (multi-threaded)
 *   Bun process gets it, not only the JS thread. TSYNC also sets no_new_privs on the threads.
 */
import { ptr } from "bun:ffi";
import { readFileSync } from "node:fs";
import { NR, PR, SyscallError, errno, prctl, sys } from "../../src/sys/libc.ts";

export type SeccompMode = "baseline" | "isolated";

export type SeccompArch = "x64" | "arm64";
const HOST_ARCH: SeccompArch = process.arch === "arm64" ? "arm64" : "x64";
const AUDIT_ARCH: Record<SeccompArch, number> = { x64: 0xc000003e, arm64: 0xc00000b7 };
/** x32 syscalls on x86_64 are the x86_64 table with this bit set. */
const X32_SYSCALL_BIT = 0x40000000;

/** Syscall numbers per arch (x86_64 table / asm-generic table used by aarch64). */
const TABLE: Record<string, { x64: number; arm64: number }> = {
  mount: { x64: 165, arm64: 40 },
  umount2: { x64: 166, arm64: 39 },
  pivot_root: { x64: 155, arm64: 41 },
  keyctl: { x64: 250, arm64: 219 },
  perf_event_open: { x64: 298, arm64: 241 },
  bpf: { x64: 321, arm64: 280 },
  clone: { x64: 56, arm64: 220 },
  clone3: { x64: 435, arm64: 435 },
  unshare: { x64: 272, arm64: 97 },
  setns: { x64: 308, arm64: 268 },
  ptrace: { x64: 101, arm64: 117 },
  io_uring_setup: { x64: 425, arm64: 425 },
  io_uring_enter: { x64: 426, arm64: 426 },
  io_uring_register: { x64: 427, arm64: 427 },
  open_tree: { x64: 428, arm64: 428 },
  move_mount: { x64: 429, arm64: 429 },
  fsopen: { x64: 430, arm64: 430 },
  fsconfig: { x64: 431, arm64: 431 },
  fsmount: { x64: 432, arm64: 432 },
  fspick: { x64: 433, arm64: 433 },
  mount_setattr: { x64: 442, arm64: 442 },
  // issue 14.1: nothing in a world may reach into another process's memory or signal the spawner
  process_vm_readv: { x64: 310, arm64: 270 },
  process_vm_writev: { x64: 311, arm64: 271 },
  pidfd_getfd: { x64: 438, arm64: 438 },
  pidfd_open: { x64: 434, arm64: 434 },
  pidfd_send_signal: { x64: 424, arm64: 424 },
  kill: { x64: 62, arm64: 129 },
  tkill: { x64: 200, arm64: 130 },
  tgkill: { x64: 234, arm64: 131 },
  rt_sigqueueinfo: { x64: 129, arm64: 138 },
  rt_tgsigqueueinfo: { x64: 297, arm64: 240 },
  prlimit64: { x64: 302, arm64: 261 },
  // issue 14.3 (FSVIEW): calls that set a file mode (-1: not on that arch)
  chmod: { x64: 90, arm64: -1 },
  fchmod: { x64: 91, arm64: 52 },
  fchmodat: { x64: 268, arm64: 53 },
  fchmodat2: { x64: 452, arm64: 452 },
  creat: { x64: 85, arm64: -1 },
  open: { x64: 2, arm64: -1 },
  openat: { x64: 257, arm64: 56 },
  openat2: { x64: 437, arm64: 437 },
  mknod: { x64: 133, arm64: -1 },
  mknodat: { x64: 259, arm64: 33 },
};

/**
 * Issue 14.3 (FSVIEW, small additive change): no command may set a setuid/setgid bit — with
 * chmod, or as the create mode of open/creat/mknod. The project is mounted nosuid, but that
 * only makes such a file inert INSIDE the world: on the host a root-owned copy of bash made
 * `chmod 4755` in the project is a root shell for every local user. The mode's argument index
 * per call; openat2 (mode inside a struct seccomp cannot read) answers ENOSYS (callers fall back
 * to openat). io_uring's openat is the remaining way round in baseline worlds (docs/SECURITY.md).
 */
const SETID_BITS = 0o6000;
const MODE_ARG: Readonly<Record<string, number>> = { chmod: 1, fchmod: 1, fchmodat: 2, fchmodat2: 2, creat: 1, open: 2, openat: 3, mknod: 1, mknodat: 2 };

/**
 * Issue 14.1: denied (EPERM) in EVERY profile unless a policy opts in for debuggers: with them a
 * command could read or rewrite the memory of the spawner (or any Substrate helper) that
 * starts its siblings. The spawner is also non-dumpable; this is the second, independent wall.
 */
export const MEMORY_ACCESS_SYSCALLS = ["ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd"] as const;
/** Signal/limit syscalls whose first argument names a process: refused for the protected pids. */
const PID_GUARDED = ["kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open", "prlimit64"] as const;

/** The spec's list of risky syscalls (logged in baseline, EPERM in isolated). */
export const RISKY_SYSCALLS = ["mount", "umount2", "pivot_root", "keyctl", "perf_event_open", "bpf"] as const;
const ISOLATED_EPERM = [
  ...RISKY_SYSCALLS,
  "setns",
  "io_uring_setup",
  "io_uring_enter",
  "io_uring_register",
  "open_tree",
  "move_mount",
  "fsopen",
  "fsconfig",
  "fsmount",
  "fspick",
  "mount_setattr",
] as const;

const CLONE_NEWNS = 0x00020000;
const CLONE_NEWCGROUP = 0x02000000;
const CLONE_NEWUTS = 0x04000000;
const CLONE_NEWIPC = 0x08000000;
const CLONE_NEWUSER = 0x10000000;
const CLONE_NEWPID = 0x20000000;
const CLONE_NEWNET = 0x40000000;
const CLONE_NEWTIME = 0x00000080;
const NS_FLAGS_CLONE =
  CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;
const NS_FLAGS_UNSHARE = NS_FLAGS_CLONE | CLONE_NEWTIME;

const EPERM = 1;
const ENOSYS = 38;

const RET = {
  KILL_PROCESS: 0x80000000,
  ERRNO: 0x00050000,
  LOG: 0x7ffc0000,
  ALLOW: 0x7fff0000,
} as const;

// Classic BPF opcodes.
const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const JSET_K = 0x45;
const RET_K = 0x06;

/** offsetof(struct seccomp_data, ...) */
const OFF_NR = 0;
const OFF_ARCH = 4;
/** Low 32 bits of args[0] (little-endian on both supported arches). */
const OFF_ARG0_LO = 16;

type Insn = [code: number, jt: number, jf: number, k: number];

const errnoRet = (e: number): number => (RET.ERRNO | (e & 0xffff)) >>> 0;

export interface SeccompProgram {
  mode: SeccompMode;
  /** The action used for the risky syscalls: "log" | "allow" (no log support) | "errno". */
  riskyAction: "log" | "allow" | "errno";
  insns: Insn[];
  /** struct sock_filter[] bytes, 8 per instruction. */
  bytes: Uint8Array;
}

/** Actions this kernel supports (`log` is what baseline needs). */
export function seccompActionsAvailable(): string[] {
  try {
    return readFileSync("/proc/sys/kernel/seccomp/actions_avail", "utf8").trim().split(/\s+/);
  } catch {
    return [];
  }
}

/** Build the filter for `mode`. Pure: no syscall, so it is unit-testable. */
export interface SeccompOptions {
  logAvailable?: boolean;
  arch?: SeccompArch;
  /**
   * Issue 14.1: pids (as seen in the world's PID namespace) no command may signal or re-limit:
   * PID 1 and the spawner. kill() of their negation (their process group) and of -1 (every
   * process we may signal) is refused too; tkill (thread ids are not knowable in advance) is
   * refused outright, pidfd_send_signal answers ENOSYS (callers fall back to kill).
   */
  protectPids?: readonly number[];
  /** Policy opt-in for debuggers (ptrace, process_vm_*): see docs/SECURITY.md for the risk. */
  allowPtrace?: boolean;
}

export function buildSeccompFilter(mode: SeccompMode, opts: SeccompOptions = {}): SeccompProgram {
  const logAvailable = opts.logAvailable ?? seccompActionsAvailable().includes("log");
  const arch = opts.arch ?? HOST_ARCH;
  const p: Insn[] = [];
  const baselineRisky = logAvailable ? RET.LOG : RET.ALLOW;
  const foreign = mode === "isolated" ? errnoRet(ENOSYS) : baselineRisky;

  // 1. arch check.
  p.push([LD_W_ABS, 0, 0, OFF_ARCH]);
  p.push([JEQ_K, 1, 0, AUDIT_ARCH[arch]]);
  p.push([RET_K, 0, 0, foreign]);
  // 2. syscall number; on x86_64 refuse the x32 range as foreign.
  p.push([LD_W_ABS, 0, 0, OFF_NR]);
  if (arch === "x64") {
    p.push([JGE_K, 0, 1, X32_SYSCALL_BIT]);
    p.push([RET_K, 0, 0, foreign]);
  }
  const simple = (name: string, ret: number): void => {
    p.push([JEQ_K, 0, 1, TABLE[name][arch]]);
    p.push([RET_K, 0, 0, ret >>> 0]);
  };
  /** if nr == name: (args[0] & mask) ? ret : ALLOW. The accumulator is clobbered, so return either way. */
  const flagged = (name: string, mask: number, ret: number): void => {
    p.push([JEQ_K, 0, 4, TABLE[name][arch]]);
    p.push([LD_W_ABS, 0, 0, OFF_ARG0_LO]);
    p.push([JSET_K, 0, 1, mask >>> 0]);
    p.push([RET_K, 0, 0, ret >>> 0]);
    p.push([RET_K, 0, 0, RET.ALLOW]);
  };
  /** if nr == name: args[0] (low 32 bits) in `values` ? ret : ALLOW. */
  const guarded = (name: string, values: readonly number[], ret: number): void => {
    const n = values.length;
    p.push([JEQ_K, 0, n + 3, TABLE[name][arch]]);
    p.push([LD_W_ABS, 0, 0, OFF_ARG0_LO]);
    values.forEach((v, i) => p.push([JEQ_K, n - i, 0, v >>> 0]));
    p.push([RET_K, 0, 0, RET.ALLOW]);
    p.push([RET_K, 0, 0, ret >>> 0]);
  };
  if (!opts.allowPtrace) for (const name of MEMORY_ACCESS_SYSCALLS) simple(name, errnoRet(EPERM));
  // Every profile: io_uring submits opens, chmods and the rest from a kernel thread that this
  // filter never sees (a setuid file created through IORING_OP_OPENAT passes the mode rule
  // below). Callers fall back to plain syscalls on EPERM (Docker's default profile does the same).
  if (mode === "baseline") for (const name of ["io_uring_setup", "io_uring_enter", "io_uring_register"]) simple(name, errnoRet(EPERM));
  // issue 14.3: setuid/setgid bits (args[i] & 06000) → EPERM; openat2 → ENOSYS
  for (const [name, i] of Object.entries(MODE_ARG)) {
    const nr = TABLE[name]![arch];
    if (nr < 0) continue;
    p.push([JEQ_K, 0, 4, nr]);
    p.push([LD_W_ABS, 0, 0, OFF_ARG0_LO + 8 * i]);
    p.push([JSET_K, 0, 1, SETID_BITS]);
    p.push([RET_K, 0, 0, errnoRet(EPERM) >>> 0]);
    p.push([RET_K, 0, 0, RET.ALLOW]);
  }
  simple("openat2", errnoRet(ENOSYS));
  const protect = opts.protectPids ?? [];
  if (protect.length) {
    simple("tkill", errnoRet(EPERM));
    simple("pidfd_send_signal", errnoRet(ENOSYS));
    const groups = protect.map((x) => -x >>> 0);
    guarded("kill", [...protect, ...groups, 0xffffffff], errnoRet(EPERM));
    for (const name of PID_GUARDED) if (name !== "kill") guarded(name, protect, errnoRet(EPERM));
  }
  if (mode === "baseline") {
    for (const name of RISKY_SYSCALLS) simple(name, baselineRisky);
  } else {
    for (const name of ISOLATED_EPERM) simple(name, errnoRet(EPERM));
    simple("clone3", errnoRet(ENOSYS));
    flagged("clone", NS_FLAGS_CLONE, errnoRet(EPERM));
    flagged("unshare", NS_FLAGS_UNSHARE, errnoRet(EPERM));
  }
  p.push([RET_K, 0, 0, RET.ALLOW]);

  const bytes = new Uint8Array(p.length * 8);
  const dv = new DataView(bytes.buffer);
  p.forEach(([code, jt, jf, k], i) => {
    dv.setUint16(i * 8, code, true);
    dv.setUint8(i * 8 + 2, jt);
    dv.setUint8(i * 8 + 3, jf);
    dv.setUint32(i * 8 + 4, k >>> 0, true);
  });
  return { mode, riskyAction: mode === "isolated" ? "errno" : logAvailable ? "log" : "allow", insns: p, bytes };
}

const SECCOMP_SET_MODE_FILTER = 1n;
const SECCOMP_FILTER_FLAG_TSYNC = 1n;

/**
 * Install the filter on every thread of this process (TSYNC). Requires no_new_privs or
 * CAP_SYS_ADMIN; call it LAST in the hardening sequence (it may deny syscalls the other steps use).
 * Returns the program that was installed.
 */
export function applySeccomp(mode: SeccompMode, opts: Omit<SeccompOptions, "arch" | "logAvailable"> = {}): SeccompProgram {
  const prog = buildSeccompFilter(mode, opts);
  // struct sock_fprog { unsigned short len; /* pad */ struct sock_filter *filter; }
  const fprog = new Uint8Array(16);
  const dv = new DataView(fprog.buffer);
  dv.setUint16(0, prog.insns.length, true);
  dv.setBigUint64(8, BigInt(ptr(prog.bytes)), true);
  const rc = sys(NR.seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, BigInt(ptr(fprog)));
  if (rc < 0) throw new SyscallError(`seccomp(SET_MODE_FILTER, ${mode})`, errno());
  // TSYNC: a positive return is the id of a thread that could not be synchronised.
  if (rc > 0) throw new Error(`seccomp: thread ${rc} could not be synchronised (it has a conflicting filter)`);
  return prog;
}

/** 0 = off, 1 = strict, 2 = filter (same value as `Seccomp:` in /proc/self/status). */
export function seccompModeOfSelf(): number {
  return prctl(PR.GET_SECCOMP);
}
