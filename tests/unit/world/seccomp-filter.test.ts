/**
 * The BPF program, run through a tiny classic-BPF interpreter (the subset we emit), so every
 * rule is checked without a kernel: arch check, x32 range, flag masks, default allow.
 */
import { describe, expect, test } from "bun:test";
import { buildSeccompFilter, type SeccompArch } from "../../../agent/world/seccomp.ts";

const NUMBERS = {
  x64: { audit: 0xc000003e, mount: 165, clone: 56, clone3: 435, unshare: 272, read: 0, ptrace: 101, bpf: 321, io_uring_setup: 425, fsopen: 430, process_vm_readv: 310, kill: 62, tkill: 200, tgkill: 234, pidfd_open: 434, pidfd_send_signal: 424, prlimit64: 302 },
  arm64: { audit: 0xc00000b7, mount: 40, clone: 220, clone3: 435, unshare: 97, read: 63, ptrace: 117, bpf: 280, io_uring_setup: 425, fsopen: 430, process_vm_readv: 270, kill: 129, tkill: 130, tgkill: 131, pidfd_open: 434, pidfd_send_signal: 424, prlimit64: 261 },
};

function run(bytes: Uint8Array, nr: number, arch: number, arg0 = 0): number {
  const dv = new DataView(bytes.buffer);
  const data = new DataView(new ArrayBuffer(64));
  data.setInt32(0, nr, true);
  data.setUint32(4, arch, true);
  data.setUint32(16, arg0, true);
  let a = 0;
  for (let pc = 0; pc < bytes.length / 8; pc++) {
    const code = dv.getUint16(pc * 8, true);
    const jt = dv.getUint8(pc * 8 + 2);
    const jf = dv.getUint8(pc * 8 + 3);
    const k = dv.getUint32(pc * 8 + 4, true);
    switch (code) {
      case 0x20: a = data.getUint32(k, true); break;
      case 0x06: return k;
      case 0x15: pc += a === k ? jt : jf; break;
      case 0x35: pc += a >>> 0 >= k ? jt : jf; break;
      case 0x45: pc += (a & k) !== 0 ? jt : jf; break;
      default: throw new Error(`unexpected opcode ${code}`);
    }
  }
  throw new Error("fell off the end");
}
const ALLOW = 0x7fff0000, LOG = 0x7ffc0000, EPERM = 0x00050001, ENOSYS = 0x00050026;

for (const arch of ["x64", "arm64"] as SeccompArch[]) {
  const N = NUMBERS[arch];
  const A = N.audit;
  describe(`baseline (${arch})`, () => {
    const p = buildSeccompFilter("baseline", { logAvailable: true, arch });
    test("risky syscalls are logged, the rest allowed", () => {
      expect(run(p.bytes, N.mount, A)).toBe(LOG);
      expect(run(p.bytes, N.bpf, A)).toBe(LOG);
      expect(run(p.bytes, N.read, A)).toBe(ALLOW);
      expect(run(p.bytes, N.clone, A, 0x40000000)).toBe(ALLOW);
      expect(run(p.bytes, N.clone3, A)).toBe(ALLOW);
    });
    test("issue 14.1: ptrace, process_vm_readv and io_uring refused in baseline too", () => {
      expect(run(p.bytes, N.ptrace, A)).toBe(EPERM);
      expect(run(p.bytes, N.process_vm_readv, A)).toBe(EPERM);
      expect(run(p.bytes, N.io_uring_setup, A)).toBe(EPERM);
      const dbg = buildSeccompFilter("baseline", { logAvailable: true, arch, allowPtrace: true });
      expect(run(dbg.bytes, N.ptrace, A)).toBe(ALLOW);
      expect(run(dbg.bytes, N.process_vm_readv, A)).toBe(ALLOW);
    });
    test("issue 14.1: signals and prlimit aimed at PID 1 or the spawner are refused; others pass", () => {
      const q = buildSeccompFilter("baseline", { logAvailable: true, arch, protectPids: [1, 2] });
      for (const pid of [1, 2, -1 >>> 0, -2 >>> 0, -1 >>> 0]) expect(run(q.bytes, N.kill, A, pid)).toBe(EPERM);
      for (const pid of [3, 77, 0, -77 >>> 0]) expect(run(q.bytes, N.kill, A, pid)).toBe(ALLOW);
      for (const nr of [N.tgkill, N.pidfd_open, N.prlimit64]) {
        expect(run(q.bytes, nr, A, 2)).toBe(EPERM);
        expect(run(q.bytes, nr, A, 1)).toBe(EPERM);
        expect(run(q.bytes, nr, A, 42)).toBe(ALLOW);
      }
      expect(run(q.bytes, N.tkill, A, 42)).toBe(EPERM);
      expect(run(q.bytes, N.pidfd_send_signal, A, 5)).toBe(ENOSYS);
    });
    test("without kernel log support baseline allows", () => {
      const q = buildSeccompFilter("baseline", { logAvailable: false, arch });
      expect(q.riskyAction).toBe("allow");
      expect(run(q.bytes, N.mount, A)).toBe(ALLOW);
    });
  });

  describe(`isolated (${arch})`, () => {
    const p = buildSeccompFilter("isolated", { logAvailable: true, arch });
    test("risky, ptrace, io_uring and the new mount API get EPERM", () => {
      for (const nr of [N.mount, N.bpf, N.ptrace, N.io_uring_setup, N.fsopen]) expect(run(p.bytes, nr, A)).toBe(EPERM);
    });
    test("clone3 gets ENOSYS so libc falls back to clone", () => {
      expect(run(p.bytes, N.clone3, A)).toBe(ENOSYS);
    });
    test("clone/unshare: namespace flags EPERM, thread/fork flags allowed", () => {
      const THREAD = 0x3d0f00; // CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
      expect(run(p.bytes, N.clone, A, THREAD)).toBe(ALLOW);
      expect(run(p.bytes, N.clone, A, 17 /* SIGCHLD: fork */)).toBe(ALLOW);
      expect(run(p.bytes, N.clone, A, 0x20000000 | 17)).toBe(EPERM); // NEWPID
      expect(run(p.bytes, N.unshare, A, 0x40000000)).toBe(EPERM); // NEWNET
      expect(run(p.bytes, N.unshare, A, 0x80)).toBe(EPERM); // NEWTIME
      expect(run(p.bytes, N.unshare, A, 0x200 /* CLONE_FS */)).toBe(ALLOW);
    });
    test("foreign arch (i386/arm32 compat) and the x32 range are refused", () => {
      expect(run(p.bytes, 21, 0x40000003)).toBe(ENOSYS);
      if (arch === "x64") expect(run(p.bytes, 0x40000000 + N.mount, A)).toBe(ENOSYS);
      // a filter built for one arch refuses the other (x86_64 vs aarch64 numbers differ)
      expect(run(p.bytes, N.mount, arch === "x64" ? NUMBERS.arm64.audit : NUMBERS.x64.audit)).toBe(ENOSYS);
      expect(run(p.bytes, N.read, A)).toBe(ALLOW);
    });
  });
}
