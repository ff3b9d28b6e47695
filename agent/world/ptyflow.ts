/**
 * Issue 18.4 (back-pressure): pausing a PTY command's output the way a terminal does — the
 * terminal's output is stopped (XOFF / `tcflow(TCOOFF)`), and the command's next write to it
 * blocks in write(2) until output is started again. Nothing is signalled and nothing is
 * dropped; a shell's job control sees nothing (never SIGSTOP).
 *
 * Why this way: the spawner's PTYs are Bun's (`Bun.spawn({terminal})`), and Bun's terminal
 * reads the master whenever data is there — it has no pause, no ref to stop reading, no fd
 * (Bun 1.4.4, src/bun.js/api/bun/Terminal.zig: onReadChunk always continues). So instead of
 * not reading the master, we stop the slave: `ioctl(slave, TCXONC, TCOOFF)` sets the tty's
 * `tco_stopped`, after which the pty driver accepts no more output from the command (n_tty
 * write waits); what was already written (the pty buffer, some KiB) is still read and sent.
 * Unlike an XOFF byte it is not in the input stream, and neither the user's ^Q nor IXANY can
 * restart it (only TCOON does).
 *
 * The slave fd comes from the master (TIOCGPTPEER, Linux 4.13): no path lookup, no /dev/pts
 * in the world needed. It is held only while output is stopped, so the master still sees EOF
 * when the command's side closes. The master is the fd Bun.spawn opened that answers TIOCGPTN:
 * a PTY master among the fds this process has after the (synchronous) spawn and had not before.
 */
import { ptr } from "bun:ffi";
import { readdirSync } from "node:fs";
import { closeFd, sys } from "../../src/sys/libc.ts";

const NR_IOCTL = process.arch === "arm64" ? 29 : 16;
const TIOCGPTPEER = 0x5441n;
const TIOCGPTN = 0x80045430n;
const TCXONC = 0x540an;
const TCOOFF = 0n;
const TCOON = 1n;
const O_RDWR = 0o2;
const O_NOCTTY = 0o400;
const O_CLOEXEC = 0o2000000;

const ioctl = (fd: number, req: bigint, arg: bigint): number => sys(NR_IOCTL, BigInt(fd), req, arg);

/** This process's open fds (taken before a spawn; see PtyFlow.openedSince). */
export function openFds(): Set<number> {
  try {
    return new Set(readdirSync("/proc/self/fd").map(Number));
  } catch {
    return new Set();
  }
}

/** Is `fd` a PTY master? (TIOCGPTN answers only on one; /dev/ptmx is /dev/pts/ptmx in a world.) */
function isMaster(fd: number): boolean {
  const n = new Uint32Array(1);
  return ioctl(fd, TIOCGPTN, BigInt(ptr(n))) === 0;
}

export class PtyFlow {
  /** The slave, open while output is stopped; -1 otherwise. */
  private slave = -1;

  private constructor(private readonly master: number) {}

  /** The PTY whose master was opened since `before` (openFds()) was taken; none if not exactly one terminal appeared. */
  static openedSince(before: Set<number>): PtyFlow | undefined {
    const fresh = [...openFds()].filter((fd) => !before.has(fd) && isMaster(fd));
    // Bun opens the master and two dups of it (reader, writer): all the same terminal. Any
    // other count means we cannot tell which terminal is ours: no pausing (as before).
    return fresh.length >= 1 && fresh.length <= 3 ? new PtyFlow(Math.min(...fresh)) : undefined;
  }

  get stopped(): boolean {
    return this.slave >= 0;
  }

  /** Stop the terminal's output (the command blocks in its next write); false if the kernel refused. */
  stop(): boolean {
    if (this.slave >= 0) return true;
    const fd = ioctl(this.master, TIOCGPTPEER, BigInt(O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (fd < 0) return false;
    if (ioctl(fd, TCXONC, TCOOFF) < 0) {
      closeFd(fd);
      return false;
    }
    this.slave = fd;
    return true;
  }

  /** Start it again (and let go of the slave). Must run before the terminal is closed. */
  start(): void {
    if (this.slave < 0) return;
    ioctl(this.slave, TCXONC, TCOON);
    closeFd(this.slave);
    this.slave = -1;
  }
}
