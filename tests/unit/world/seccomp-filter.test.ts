/**
 * The BPF program, run through a tiny classic-BPF interpreter (the subset we emit), so every
 * rule is checked without a kernel: arch check, x32 range, flag masks, default allow.
 */
import { describe, expect, test } from "bun:test";
import { buildSeccompFilter } from "../../../agent/world/seccomp.ts";

const X64 = process.arch !== "arm64";
const AUDIT_ARCH = X64 ? 0xc000003e : 0xc00000b7;
const N = X64
  ? { mount: 165, clone: 56, clone3: 435, unshare: 272, read: 0, ptrace: 101, bpf: 321, io_uring_setup: 425, fsopen: 430 }
  : { mount: 40, clone: 220, clone3: 435, unshare: 97, read: 63, ptrace: 117, bpf: 280, io_uring_setup: 425, fsopen: 430 };

function run(bytes: Uint8Array, nr: number, arch = AUDIT_ARCH, arg0 = 0): number {
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

describe("baseline", () => {
  const p = buildSeccompFilter("baseline", { logAvailable: true });
  test("risky syscalls are logged, the rest allowed", () => {
    expect(run(p.bytes, N.mount)).toBe(LOG);
    expect(run(p.bytes, N.bpf)).toBe(LOG);
    expect(run(p.bytes, N.read)).toBe(ALLOW);
    expect(run(p.bytes, N.clone, AUDIT_ARCH, 0x40000000)).toBe(ALLOW);
    expect(run(p.bytes, N.clone3)).toBe(ALLOW);
  });
  test("without kernel log support baseline allows", () => {
    const q = buildSeccompFilter("baseline", { logAvailable: false });
    expect(q.riskyAction).toBe("allow");
    expect(run(q.bytes, N.mount)).toBe(ALLOW);
  });
});

describe("isolated", () => {
  const p = buildSeccompFilter("isolated", { logAvailable: true });
  test("risky, ptrace, io_uring and the new mount API get EPERM", () => {
    for (const nr of [N.mount, N.bpf, N.ptrace, N.io_uring_setup, N.fsopen]) expect(run(p.bytes, nr)).toBe(EPERM);
  });
  test("clone3 gets ENOSYS so libc falls back to clone", () => {
    expect(run(p.bytes, N.clone3)).toBe(ENOSYS);
  });
  test("clone/unshare: namespace flags EPERM, thread/fork flags allowed", () => {
    const THREAD = 0x3d0f00; // CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
    expect(run(p.bytes, N.clone, AUDIT_ARCH, THREAD)).toBe(ALLOW);
    expect(run(p.bytes, N.clone, AUDIT_ARCH, 17 /* SIGCHLD: fork */)).toBe(ALLOW);
    expect(run(p.bytes, N.clone, AUDIT_ARCH, 0x20000000 | 17)).toBe(EPERM); // NEWPID
    expect(run(p.bytes, N.unshare, AUDIT_ARCH, 0x40000000)).toBe(EPERM); // NEWNET
    expect(run(p.bytes, N.unshare, AUDIT_ARCH, 0x80)).toBe(EPERM); // NEWTIME
    expect(run(p.bytes, N.unshare, AUDIT_ARCH, 0x200 /* CLONE_FS */)).toBe(ALLOW);
  });
  test("foreign arch (i386 on x86_64) and the x32 range are refused", () => {
    expect(run(p.bytes, 21, 0x40000003)).toBe(ENOSYS);
    if (X64) expect(run(p.bytes, 0x40000000 + N.mount)).toBe(ENOSYS);
    expect(run(p.bytes, N.read)).toBe(ALLOW);
  });
});
