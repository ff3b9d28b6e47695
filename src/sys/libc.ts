/**
 * libc through bun:ffi: the few syscalls Bun has no API for (mount, pivot_root, prctl,
 * landlock, seccomp, memfd). Works in a `bun build --compile` binary (measured).
 *
 * Trap: `syscall(2)` is variadic; declare all seven arguments or the kernel reads
 * garbage registers for the ones you left out. Pass 0 for unused ones.
 */
import { dlopen, FFIType, ptr, type Pointer } from "bun:ffi";

const { i32, i64, u64, cstring, pointer: P } = FFIType;


function openLibc() {
  return dlopen("libc.so.6", {
    syscall: { args: [i64, u64, u64, u64, u64, u64, u64], returns: i64 },
    // String arguments are declared as pointers and passed as NUL-terminated Buffers.
    mount: { args: [P, P, P, u64, P], returns: i32 },
    umount2: { args: [P, i32], returns: i32 },
    prctl: { args: [i32, u64, u64, u64, u64], returns: i32 },
    sethostname: { args: [P, u64], returns: i32 },
    chdir: { args: [P], returns: i32 },
    umask: { args: [u64], returns: u64 },
    getuid: { args: [], returns: i32 },
    geteuid: { args: [], returns: i32 },
    close: { args: [i32], returns: i32 },
    execve: { args: [P, P, P], returns: i32 },
    __errno_location: { args: [], returns: P },
    strerror: { args: [i32], returns: cstring },
  });
}

let lib: ReturnType<typeof openLibc> | undefined;
/** Lazily opened: the host CLI on macOS never touches it. */
export function libc(): ReturnType<typeof openLibc>["symbols"] {
  lib ??= openLibc();
  return lib.symbols;
}

import { read } from "bun:ffi";
export function errno(): number {
  const p = libc().__errno_location();
  return p === null ? 0 : read.i32(p, 0);
}

export class SyscallError extends Error {
  constructor(
    readonly op: string,
    readonly errno: number,
  ) {
    super(`${op}: ${String(libc().strerror(errno))} (errno ${errno})`);
    this.name = "SyscallError";
  }
}

/** Turn a C-style `-1 + errno` return into an exception. */
export function check(op: string, rc: number | bigint): number {
  const n = typeof rc === "bigint" ? Number(rc) : rc;
  if (n < 0) throw new SyscallError(op, errno());
  return n;
}

/** NUL-terminated buffer for cstring arguments. */
export const cstr = (s: string): Buffer => Buffer.from(`${s}\0`, "utf8");
export const ptrOf = (b: Buffer | Uint8Array): Pointer => ptr(b);

/** Raw syscall with all seven arguments declared. */
export function sys(nr: number, a = 0n, b = 0n, c = 0n, d = 0n, e = 0n, f = 0n): number {
  return Number(libc().syscall(BigInt(nr), a, b, c, d, e, f));
}

type Arch = "x64" | "arm64";
const ARCH: Arch = process.arch === "arm64" ? "arm64" : "x64";
/** Syscall numbers we use, per arch (x86_64 / aarch64 generic table). */
export const NR = {
  pivot_root: { x64: 155, arm64: 41 }[ARCH],
  unshare: { x64: 272, arm64: 97 }[ARCH],
  setns: { x64: 308, arm64: 268 }[ARCH],
  seccomp: { x64: 317, arm64: 277 }[ARCH],
  memfd_create: { x64: 319, arm64: 279 }[ARCH],
  landlock_create_ruleset: 444,
  landlock_add_rule: 445,
  landlock_restrict_self: 446,
  ptrace: { x64: 101, arm64: 117 }[ARCH],
  capget: { x64: 125, arm64: 90 }[ARCH],
  capset: { x64: 126, arm64: 91 }[ARCH],
  openat: { x64: 257, arm64: 56 }[ARCH],
  // issue 6 (agent/scopes.ts): sealing the scope-token memfd and rewinding it
  fcntl: { x64: 72, arm64: 25 }[ARCH],
  lseek: { x64: 8, arm64: 62 }[ARCH],
  getsockopt: { x64: 55, arm64: 209 }[ARCH],
  // issue 13/14: the spawner drops to the caller's identity on its JS thread before execve
  setresuid: { x64: 117, arm64: 147 }[ARCH],
  setresgid: { x64: 119, arm64: 149 }[ARCH],
  setgroups: { x64: 116, arm64: 159 }[ARCH],
  setsid: { x64: 112, arm64: 157 }[ARCH],
} as const;

export const MS = {
  RDONLY: 1n,
  NOSUID: 2n,
  NODEV: 4n,
  NOEXEC: 8n,
  REMOUNT: 32n,
  BIND: 4096n,
  MOVE: 8192n,
  REC: 16384n,
  PRIVATE: 1n << 18n,
  SLAVE: 1n << 19n,
} as const;
export const MNT_DETACH = 2;

/** mount(2). `data` is the fs-specific option string (e.g. overlay lowerdir=...). */
export function mount(source: string, target: string, fstype: string | null, flags: bigint, data?: string): void {
  const dataBuf = data === undefined ? null : cstr(data);
  const rc = libc().mount(
    ptr(cstr(source)),
    ptr(cstr(target)),
    fstype === null ? null : ptr(cstr(fstype)),
    flags,
    dataBuf === null ? null : ptr(dataBuf),
  );
  check(`mount ${fstype ?? ""} ${source} -> ${target}`, rc);
}

export function umount2(target: string, flags = 0): void {
  check(`umount2 ${target}`, libc().umount2(ptr(cstr(target)), flags));
}

export function pivotRoot(newRoot: string, putOld: string): void {
  const a = cstr(newRoot);
  const b = cstr(putOld);
  check("pivot_root", sys(NR.pivot_root, BigInt(ptr(a)), BigInt(ptr(b))));
}

export function sethostname(name: string): void {
  const b = Buffer.from(name, "utf8");
  check("sethostname", libc().sethostname(ptr(b), BigInt(b.length)));
}

export function chdir(path: string): void {
  check(`chdir ${path}`, libc().chdir(ptr(cstr(path))));
}

export const PR = {
  SET_NO_NEW_PRIVS: 38,
  GET_NO_NEW_PRIVS: 39,
  CAPBSET_DROP: 24,
  SET_PDEATHSIG: 1,
  GET_SECCOMP: 21,
  CAPBSET_READ: 23,
  CAP_AMBIENT: 47,
  SET_DUMPABLE: 4,
  GET_DUMPABLE: 3,
} as const;

export function prctl(option: number, a = 0n, b = 0n, c = 0n, d = 0n): number {
  return check(`prctl ${option}`, libc().prctl(option, a, b, c, d));
}

/** openat(AT_FDCWD, path, flags) → fd (O_PATH fds for Landlock rules). */
export const O_PATH = 0x200000;
export const O_CLOEXEC = 0x80000;
export function openPath(path: string, flags = O_PATH | O_CLOEXEC): number {
  const b = cstr(path);
  return check(`open ${path}`, sys(NR.openat, BigInt.asUintN(64, -100n), BigInt(ptr(b)), BigInt(flags)));
}
export function closeFd(fd: number): void {
  libc().close(fd);
}

const F_GETFD = 1n;
const F_SETFD = 2n;
const FD_CLOEXEC = 1n;
/** Keep `fd` open across execve (or, with `on`, close it there again). */
export function setCloexec(fd: number, on: boolean): void {
  const cur = check(`fcntl(${fd}, F_GETFD)`, sys(NR.fcntl, BigInt(fd), F_GETFD));
  const next = on ? BigInt(cur) | FD_CLOEXEC : BigInt(cur) & ~FD_CLOEXEC;
  check(`fcntl(${fd}, F_SETFD)`, sys(NR.fcntl, BigInt(fd), F_SETFD, next));
}

/**
 * Switch the CALLING THREAD to uid/gid/groups with raw syscalls (glibc's wrappers would
 * broadcast to every thread). Only meant right before execve, which keeps just this thread.
 */
export function setThreadIdentity(uid: number, gid: number, groups: readonly number[]): void {
  const g = new Uint32Array(groups.length || 1);
  groups.forEach((v, i) => (g[i] = v));
  check("setgroups", sys(NR.setgroups, BigInt(groups.length), BigInt(ptr(g))));
  check("setresgid", sys(NR.setresgid, BigInt(gid), BigInt(gid), BigInt(gid)));
  check("setresuid", sys(NR.setresuid, BigInt(uid), BigInt(uid), BigInt(uid)));
}

/** execve(2): replaces the whole process (all threads) with `argv`; returns only on failure. */
export function execve(path: string, argv: readonly string[], env: Record<string, string>): never {
  const keep: Buffer[] = [];
  const arr = (items: string[]): BigUint64Array => {
    const a = new BigUint64Array(items.length + 1);
    items.forEach((s, i) => {
      const b = cstr(s);
      keep.push(b);
      a[i] = BigInt(ptr(b));
    });
    return a;
  };
  const p = cstr(path);
  const av = arr([...argv]);
  const ev = arr(Object.entries(env).map(([k, v]) => `${k}=${v}`));
  libc().execve(ptr(p), ptr(av), ptr(ev));
  throw new SyscallError(`execve ${path}`, errno());
}
