/**
 * The per-command exec helper (issue 14.2: a scope token is readable only by the command it
 * was issued to).
 *
 * Why: every command of a world runs as the same uid. Without more, a process one command left
 * running (`keep_background`, or a concurrent command) may open `/proc/<pid>/fd/3` (the next
 * command's sealed scope token), `/proc/<pid>/environ` and `/proc/<pid>/mem` of every later
 * command: the kernel allows that to any same-uid, dumpable process (`ptrace_may_access`,
 * PTRACE_MODE_READ/ATTACH). Landlock adds one rule to that check: a process may only inspect
 * processes in its own Landlock domain or in domains nested below it. So every command gets a
 * domain of its own, nested in the world's: commands become siblings and cannot inspect each
 * other (nor the spawner, already non-dumpable), while a command still inspects its own
 * children (`ps`, `strace` where allowed, `cat /proc/$!/environ`). Signals are NOT scoped:
 * `pkill -f devserver` from a later command must keep working.
 *
 * How: the spawner is Bun; Bun.spawn has no pre-exec hook and `landlock_restrict_self` binds
 * the calling thread (nesting on every call; at most 16 layers). So each command starts
 * through this helper: a ~300-byte static ELF (no libc, no loader, so it costs one execve —
 * a Bun helper would cost 6–12 ms and 20 MiB per command). It:
 *   1. if argv[1] starts with 't': ioctl(0, TIOCSCTTY, 0) (a PTY the spawner opened itself);
 *   2. landlock_create_ruleset({handled_access_fs: MAKE_BLOCK}, 8, 0) + landlock_restrict_self:
 *      a new domain whose only handled right is making block devices, which a world can never
 *      do anyway (no CAP_MKNOD, nodev): the domain restricts nothing but who may inspect whom.
 *      ENOSYS/EOPNOTSUPP (no Landlock: the world has none either) → exec anyway; any other
 *      error → exit 125 with one line (fail closed);
 *   3. execve(argv[2], &argv[3], envp): argv[2] is the resolved program, argv[3] the command's
 *      own argv[0]. On failure: one line, exit 127 (ENOENT) or 126.
 * The ruleset fd is O_CLOEXEC by the kernel, so the command inherits nothing of it.
 *
 * The bytes are assembled here, per architecture, with the instruction next to each encoding
 * (verified with objdump and run under qemu-aarch64 for arm64: tests/unit/cmdexec.test.ts).
 * The spawner writes the file into the world's read-only root (CMDEXEC_PATH) before the root
 * is sealed, so no command can replace it.
 */

/** Where the helper lives inside every world (in the root tmpfs, read-only once built). */
export const CMDEXEC_PATH = "/.substrate/cmdexec";

export const EXIT_DOMAIN_FAILED = 125;

const MSG_EXEC = "substrate: cannot execute the command\n";
const MSG_DOMAIN = "substrate: cannot give the command its own Landlock domain\n";

const NR = {
  x64: { ioctl: 16, write: 1, execve: 59, exit_group: 231 },
  arm64: { ioctl: 29, write: 64, execve: 221, exit_group: 94 },
} as const;
const NR_LANDLOCK_CREATE_RULESET = 444; // the same on every architecture
const NR_LANDLOCK_RESTRICT_SELF = 446;
const TIOCSCTTY = 0x540e;
const LANDLOCK_ACCESS_FS_MAKE_BLOCK = 1 << 11;
const ENOENT = 2;
const ENOSYS = 38;
const EOPNOTSUPP = 95;

// ---- a two-pass assembler: fixed-size items, labels resolved in the second pass ----------

interface Item {
  size: number;
  label?: string;
  emit?: (pos: number, at: (label: string) => number) => number[];
}
const label = (name: string): Item => ({ size: 0, label: name });
const raw = (...bytes: number[]): Item => ({ size: bytes.length, emit: () => bytes });
const text = (s: string): Item => raw(...Buffer.from(s, "latin1"));
const le32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];

function assemble(items: Item[]): Uint8Array {
  const labels = new Map<string, number>();
  let pos = 0;
  for (const it of items) {
    if (it.label) labels.set(it.label, pos);
    pos += it.size;
  }
  const at = (l: string) => {
    const v = labels.get(l);
    if (v === undefined) throw new Error(`cmdexec: no label ${l}`);
    return v;
  };
  const out: number[] = [];
  for (const it of items) {
    if (!it.emit) continue;
    const bytes = it.emit(out.length, at);
    if (bytes.length !== it.size) throw new Error("cmdexec: item size mismatch");
    out.push(...bytes);
  }
  return Uint8Array.from(out);
}

// ---- x86-64 ---------------------------------------------------------------------------

/** `op rel8` short jump to a label. */
function x64jmp8(op: number, to: string): Item {
  return {
    size: 2,
    emit: (pos, at) => {
      const rel = at(to) - (pos + 2);
      if (rel < -128 || rel > 127) throw new Error("cmdexec: x64 short jump out of range");
      return [op, rel & 0xff];
    },
  };
}
const x64movEax = (v: number) => raw(0xb8, ...le32(v)); // mov eax, imm32
const x64movEdi = (v: number) => raw(0xbf, ...le32(v)); // mov edi, imm32
const x64movEsi = (v: number) => raw(0xbe, ...le32(v)); // mov esi, imm32
const x64movEdx = (v: number) => raw(0xba, ...le32(v)); // mov edx, imm32
const SYSCALL = raw(0x0f, 0x05);
/** lea rsi, [rip + label] */
const x64leaRsi = (to: string): Item => ({ size: 7, emit: (pos, at) => [0x48, 0x8d, 0x35, ...le32(at(to) - (pos + 7))] });

function x64(): Uint8Array {
  const n = NR.x64;
  return assemble([
    raw(0x48, 0x89, 0xe3), //                 mov rbx, rsp          (argc, argv..., 0, envp...)
    raw(0x48, 0x8b, 0x43, 0x10), //           mov rax, [rbx+16]     argv[1]: the flags
    raw(0x80, 0x38, 0x74), //                 cmp byte [rax], 't'
    x64jmp8(0x75, "domain"), //               jne domain
    raw(0x31, 0xff), //                       xor edi, edi          fd 0
    x64movEsi(TIOCSCTTY), //                  mov esi, TIOCSCTTY
    raw(0x31, 0xd2), //                       xor edx, edx
    x64movEax(n.ioctl), //                    mov eax, ioctl
    SYSCALL,
    raw(0x48, 0x85, 0xc0), //                 test rax, rax
    x64jmp8(0x78, "fail_domain"), //          js fail_domain
    label("domain"),
    raw(0x68, ...le32(LANDLOCK_ACCESS_FS_MAKE_BLOCK)), // push MAKE_BLOCK (the 8-byte attr on the stack)
    raw(0x48, 0x89, 0xe7), //                 mov rdi, rsp          &attr
    x64movEsi(8), //                          mov esi, 8            sizeof attr (ABI 1 layout)
    raw(0x31, 0xd2), //                       xor edx, edx
    x64movEax(NR_LANDLOCK_CREATE_RULESET), // mov eax, landlock_create_ruleset
    SYSCALL,
    raw(0x59), //                             pop rcx               drop the attr
    raw(0x48, 0x85, 0xc0), //                 test rax, rax
    x64jmp8(0x79, "restrict"), //             jns restrict
    raw(0x83, 0xf8, -ENOSYS & 0xff), //       cmp eax, -ENOSYS      no Landlock in this kernel
    x64jmp8(0x74, "exec"), //                 je exec
    raw(0x83, 0xf8, -EOPNOTSUPP & 0xff), //   cmp eax, -EOPNOTSUPP  Landlock disabled at boot
    x64jmp8(0x74, "exec"), //                 je exec
    x64jmp8(0xeb, "fail_domain"), //          jmp fail_domain
    label("restrict"),
    raw(0x89, 0xc7), //                       mov edi, eax          the ruleset fd
    raw(0x31, 0xf6), //                       xor esi, esi          flags 0
    x64movEax(NR_LANDLOCK_RESTRICT_SELF), //  mov eax, landlock_restrict_self
    SYSCALL,
    raw(0x48, 0x85, 0xc0), //                 test rax, rax
    x64jmp8(0x78, "fail_domain"), //          js fail_domain
    label("exec"),
    raw(0x48, 0x8b, 0x7b, 0x18), //           mov rdi, [rbx+24]     argv[2]: the program
    raw(0x48, 0x8d, 0x73, 0x20), //           lea rsi, [rbx+32]     &argv[3]: its argv
    raw(0x48, 0x8b, 0x0b), //                 mov rcx, [rbx]        argc
    raw(0x48, 0x8d, 0x54, 0xcb, 0x10), //     lea rdx, [rbx+rcx*8+16] envp
    x64movEax(n.execve), //                   mov eax, execve
    SYSCALL,
    raw(0x89, 0xc3), //                       mov ebx, eax          -errno
    raw(0xbf, 2, 0, 0, 0), //                 mov edi, 2            stderr
    x64leaRsi("msg_exec"), //                 lea rsi, [rip+msg_exec]
    x64movEdx(MSG_EXEC.length), //            mov edx, len
    x64movEax(n.write), //                    mov eax, write
    SYSCALL,
    x64movEdi(126), //                        mov edi, 126
    raw(0x83, 0xfb, -ENOENT & 0xff), //       cmp ebx, -ENOENT
    x64jmp8(0x75, "exit"), //                 jne exit
    x64movEdi(127), //                        mov edi, 127
    x64jmp8(0xeb, "exit"), //                 jmp exit
    label("fail_domain"),
    raw(0xbf, 2, 0, 0, 0), //                 mov edi, 2
    x64leaRsi("msg_domain"), //               lea rsi, [rip+msg_domain]
    x64movEdx(MSG_DOMAIN.length), //          mov edx, len
    x64movEax(n.write), //                    mov eax, write
    SYSCALL,
    x64movEdi(EXIT_DOMAIN_FAILED), //         mov edi, 125
    label("exit"),
    x64movEax(n.exit_group), //               mov eax, exit_group
    SYSCALL,
    label("msg_exec"),
    text(MSG_EXEC),
    label("msg_domain"),
    text(MSG_DOMAIN),
  ]);
}

// ---- arm64 (every instruction 4 bytes, little-endian) ------------------------------------

const a64 = (w: number): Item => raw(...le32(w >>> 0));
/** movz xD, #imm16 */
const movz = (d: number, imm: number) => a64(0xd2800000 | ((imm & 0xffff) << 5) | d);
const SVC0 = a64(0xd4000001);
/** A branch whose offset field (in instructions) is `bits` wide at bit `shift`. */
function a64branch(base: number, to: string, bits: number, shift: number): Item {
  return {
    size: 4,
    emit: (pos, at) => {
      const off = (at(to) - pos) / 4;
      const lim = 1 << (bits - 1);
      if (off < -lim || off >= lim) throw new Error("cmdexec: arm64 branch out of range");
      return le32((base | ((off & ((1 << bits) - 1)) << shift)) >>> 0);
    },
  };
}
const bcond = (cond: number, to: string) => a64branch(0x54000000 | cond, to, 19, 5); // b.cond
const b = (to: string) => a64branch(0x14000000, to, 26, 0); // b
const tbnz63 = (rt: number, to: string) => a64branch(0xb7f80000 | rt, to, 14, 5); // tbnz xT, #63
const tbz63 = (rt: number, to: string) => a64branch(0xb6f80000 | rt, to, 14, 5); // tbz xT, #63
/** adr xD, label */
const adr = (d: number, to: string): Item => ({
  size: 4,
  emit: (pos, at) => {
    const off = at(to) - pos;
    return le32((0x10000000 | ((off & 3) << 29) | (((off >> 2) & 0x7ffff) << 5) | d) >>> 0);
  },
});
const NE = 1;
const EQ = 0;

function arm64(): Uint8Array {
  const n = NR.arm64;
  return assemble([
    a64(0x910003f3), //                       mov x19, sp           (argc, argv..., 0, envp...)
    a64(0xf9400a60), //                       ldr x0, [x19, #16]    argv[1]: the flags
    a64(0x39400001), //                       ldrb w1, [x0]
    a64(0x7101d03f), //                       cmp w1, #'t'
    bcond(NE, "domain"), //                   b.ne domain
    movz(0, 0), //                            mov x0, #0            fd 0
    movz(1, TIOCSCTTY), //                    mov x1, #TIOCSCTTY
    movz(2, 0), //                            mov x2, #0
    movz(8, n.ioctl), //                      mov x8, #ioctl
    SVC0,
    tbnz63(0, "fail_domain"), //              tbnz x0, #63, fail_domain
    label("domain"),
    movz(9, LANDLOCK_ACCESS_FS_MAKE_BLOCK), // mov x9, #MAKE_BLOCK
    a64(0xf81f0fe9), //                       str x9, [sp, #-16]!   the 8-byte attr on the stack
    a64(0x910003e0), //                       mov x0, sp            &attr
    movz(1, 8), //                            mov x1, #8            sizeof attr (ABI 1 layout)
    movz(2, 0), //                            mov x2, #0
    movz(8, NR_LANDLOCK_CREATE_RULESET), //   mov x8, #landlock_create_ruleset
    SVC0,
    a64(0x910043ff), //                       add sp, sp, #16       drop the attr
    tbz63(0, "restrict"), //                  tbz x0, #63, restrict
    a64(0xb100001f | (ENOSYS << 10)), //      cmn x0, #ENOSYS       no Landlock in this kernel
    bcond(EQ, "exec"), //                     b.eq exec
    a64(0xb100001f | (EOPNOTSUPP << 10)), //  cmn x0, #EOPNOTSUPP   Landlock disabled at boot
    bcond(EQ, "exec"), //                     b.eq exec
    b("fail_domain"), //                      b fail_domain
    label("restrict"),
    movz(1, 0), //                            mov x1, #0            (x0 = the ruleset fd)
    movz(8, NR_LANDLOCK_RESTRICT_SELF), //    mov x8, #landlock_restrict_self
    SVC0,
    tbnz63(0, "fail_domain"), //              tbnz x0, #63, fail_domain
    label("exec"),
    a64(0xf9400e60), //                       ldr x0, [x19, #24]    argv[2]: the program
    a64(0x91008261), //                       add x1, x19, #32      &argv[3]: its argv
    a64(0xf9400263), //                       ldr x3, [x19]         argc
    a64(0x8b030e62), //                       add x2, x19, x3, lsl #3
    a64(0x91004042), //                       add x2, x2, #16       envp
    movz(8, n.execve), //                     mov x8, #execve
    SVC0,
    a64(0xaa0003f3), //                       mov x19, x0           -errno
    movz(0, 2), //                            mov x0, #2            stderr
    adr(1, "msg_exec"), //                    adr x1, msg_exec
    movz(2, MSG_EXEC.length), //              mov x2, #len
    movz(8, n.write), //                      mov x8, #write
    SVC0,
    movz(0, 126), //                          mov x0, #126
    a64(0xb100027f | (ENOENT << 10)), //      cmn x19, #ENOENT
    bcond(NE, "exit"), //                     b.ne exit
    movz(0, 127), //                          mov x0, #127
    b("exit"), //                             b exit
    label("fail_domain"),
    movz(0, 2), //                            mov x0, #2
    adr(1, "msg_domain"), //                  adr x1, msg_domain
    movz(2, MSG_DOMAIN.length), //            mov x2, #len
    movz(8, n.write), //                      mov x8, #write
    SVC0,
    movz(0, EXIT_DOMAIN_FAILED), //           mov x0, #125
    label("exit"),
    movz(8, n.exit_group), //                 mov x8, #exit_group
    SVC0,
    label("msg_exec"),
    text(MSG_EXEC),
    label("msg_domain"),
    text(MSG_DOMAIN),
  ]);
}

// ---- the ELF file -------------------------------------------------------------------------

const BASE = 0x400000;
const EHDR = 64;
const PHDR = 56;

/** A static ELF64 executable: one PT_LOAD (R+X) mapping the whole file at BASE. */
function elf(machine: number, code: Uint8Array): Uint8Array {
  const total = EHDR + PHDR + code.length;
  const buf = Buffer.alloc(total);
  buf.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0], 0); // \x7fELF, 64-bit, little-endian, v1, SysV
  buf.writeUInt16LE(2, 16); // e_type ET_EXEC
  buf.writeUInt16LE(machine, 18); // e_machine
  buf.writeUInt32LE(1, 20); // e_version
  buf.writeBigUInt64LE(BigInt(BASE + EHDR + PHDR), 24); // e_entry
  buf.writeBigUInt64LE(BigInt(EHDR), 32); // e_phoff
  buf.writeBigUInt64LE(0n, 40); // e_shoff (no sections)
  buf.writeUInt32LE(0, 48); // e_flags
  buf.writeUInt16LE(EHDR, 52); // e_ehsize
  buf.writeUInt16LE(PHDR, 54); // e_phentsize
  buf.writeUInt16LE(1, 56); // e_phnum
  buf.writeUInt16LE(64, 58); // e_shentsize
  buf.writeUInt16LE(0, 60); // e_shnum
  buf.writeUInt16LE(0, 62); // e_shstrndx
  const p = EHDR;
  buf.writeUInt32LE(1, p); // p_type PT_LOAD
  buf.writeUInt32LE(5, p + 4); // p_flags R+X
  buf.writeBigUInt64LE(0n, p + 8); // p_offset
  buf.writeBigUInt64LE(BigInt(BASE), p + 16); // p_vaddr
  buf.writeBigUInt64LE(BigInt(BASE), p + 24); // p_paddr
  buf.writeBigUInt64LE(BigInt(total), p + 32); // p_filesz
  buf.writeBigUInt64LE(BigInt(total), p + 40); // p_memsz
  buf.writeBigUInt64LE(0x1000n, p + 48); // p_align
  buf.set(code, EHDR + PHDR);
  return new Uint8Array(buf);
}

const EM_X86_64 = 62;
const EM_AARCH64 = 183;

/** The helper for `arch` (process.arch spelling). */
export function cmdexecElf(arch: string = process.arch): Uint8Array {
  if (arch === "x64") return elf(EM_X86_64, x64());
  if (arch === "arm64") return elf(EM_AARCH64, arm64());
  throw new Error(`cmdexec: no helper for architecture ${arch}`);
}

/**
 * The argv that starts `program` (already resolved: an absolute path, or relative to the
 * command's cwd) with `argv` (argv[0] is the command's own) through the helper.
 */
export function viaCmdexec(program: string, argv: string[], opts: { ctty?: boolean } = {}): string[] {
  return [CMDEXEC_PATH, opts.ctty ? "t" : "-", program, ...argv];
}
