/**
 * The gateway's relay for handed-over connections, in the kernel: splice(2) through a pipe
 * per direction (socket → pipe → socket, pages moved, no copy through user space), driven by
 * one worker thread per agent that waits in epoll_wait (bun:ffi; Bun has no API for it). A
 * Bun relay (splice.ts) copies every byte into JS and out again; this one costs a fraction of
 * the CPU (measured ~0.1 vs ~0.35-0.45 CPU-s per 512 MiB on this 2-vCPU VM), which on a
 * loaded machine is throughput.
 *
 * Used for connections whose command has no egress budget: a budget needs the gateway to see
 * every chunk (splice.ts does that). Bytes are counted by the worker per direction and read
 * live through shared memory (a command's summary while the connection is open), exact at
 * the end (the `done` message). Half-close is forwarded (EOF one way, everything flushed →
 * shutdown(SHUT_WR) of the other side); an error either way closes both.
 *
 * Main thread → worker: a ring of commands in a SharedArrayBuffer (add / kill), then an
 * eventfd write to wake epoll_wait. Worker → main: postMessage({slot, up, down, err}) once
 * per connection. The worker never returns to its event loop; it dies with the agent.
 */
import { dlopen, FFIType, ptr, read } from "bun:ffi";

const WORKER_SRC = `
import { dlopen, FFIType, ptr, read } from "bun:ffi";
const { i32, i64, u64, u32, pointer: P } = FFIType;
const L = dlopen("libc.so.6", {
  epoll_create1: { args: [i32], returns: i32 },
  epoll_ctl: { args: [i32, i32, i32, P], returns: i32 },
  epoll_wait: { args: [i32, P, i32, i32], returns: i32 },
  splice: { args: [i32, P, i32, P, u64, u32], returns: i64 },
  pipe2: { args: [P, i32], returns: i32 },
  fcntl: { args: [i32, i32, i32], returns: i32 },
  read: { args: [i32, P, u64], returns: i64 },
  shutdown: { args: [i32, i32], returns: i32 },
  close: { args: [i32], returns: i32 },
  __errno_location: { args: [], returns: P },
}).symbols;
const errno = () => read.i32(L.__errno_location(), 0);
const EAGAIN = 11, EINTR = 4, IN = 1, OUT = 4, ET = 0x80000000;
const MOVE_NONBLOCK = 1 | 2; // SPLICE_F_MOVE | SPLICE_F_NONBLOCK
self.onmessage = (e) => {
  const { ring, counters, efd, evSize, dataOff } = e.data;
  const R = new Int32Array(ring), C = new Float64Array(counters);
  const CAP = (R.length - 2) >> 2;
  const ep = L.epoll_create1(0x80000);
  const ev = new DataView(new ArrayBuffer(evSize));
  const ctl = (op, fd, events, data) => { ev.setUint32(0, events, true); ev.setBigUint64(dataOff, BigInt(data), true); return L.epoll_ctl(ep, op, fd, ptr(new Uint8Array(ev.buffer))); };
  const WAKE = 0xffffffff;
  ctl(1, efd, IN, WAKE);
  const conns = [];
  const MAXEV = 64;
  const evs = new Uint8Array(evSize * MAXEV);
  const evv = new DataView(evs.buffer);
  const eb = new Uint8Array(8);
  const mkdir = (src, dst, idx) => {
    const p = new Int32Array(2);
    if (L.pipe2(ptr(p), 0o2000000 | 0o4000) !== 0) return null;
    L.fcntl(p[1], 1031, 1 << 19); // F_SETPIPE_SZ 512 KiB (best effort)
    const cap = L.fcntl(p[1], 1032, 0);
    return { src, dst, pr: p[0], pw: p[1], cap: cap > 0 ? cap : 65536, inPipe: 0, eof: false, shut: false, bytes: 0, idx };
  };
  const finish = (c) => {
    if (c.done) return;
    c.done = true;
    L.epoll_ctl(ep, 2, c.a, null); L.epoll_ctl(ep, 2, c.b, null);
    for (const fd of [c.a, c.b, c.up.pr, c.up.pw, c.down.pr, c.down.pw]) L.close(fd);
    conns[c.slot] = undefined;
    again.delete(c);
    postMessage({ slot: c.slot, up: c.up.bytes, down: c.down.bytes, err: c.err ?? 0 });
  };
  // Edge-triggered: each pump goes on until neither direction can move (EAGAIN / pipe full /
  // pipe empty), or 64 rounds, after which the connection is pumped again before the next wait.
  const again = new Set();
  const pumpDir = (c, d) => {
    for (let i = 0; ; i++) {
      if (i === 64) { again.add(c); break; }
      let moved = false;
      if (!d.eof && d.inPipe < d.cap) {
        const r = Number(L.splice(d.src, null, d.pw, null, BigInt(d.cap - d.inPipe), MOVE_NONBLOCK));
        if (r > 0) { d.inPipe += r; moved = true; }
        else if (r === 0) d.eof = true;
        else { const e = errno(); if (e !== EAGAIN && e !== EINTR) { c.err = e; return; } }
      }
      if (d.inPipe > 0) {
        const w = Number(L.splice(d.pr, null, d.dst, null, BigInt(d.inPipe), MOVE_NONBLOCK));
        if (w > 0) { d.inPipe -= w; d.bytes += w; C[c.slot * 2 + d.idx] = d.bytes; moved = true; }
        else { const e = errno(); if (e !== EAGAIN && e !== EINTR) { c.err = e; return; } }
      }
      if (!moved) break;
    }
    if (d.eof && d.inPipe === 0 && !d.shut) { L.shutdown(d.dst, 1); d.shut = true; }
  };
  // A hang-up is not an error (data may still wait to be read); a broken socket shows as a
  // splice error, which closes both sides.
  const pump = (c) => {
    again.delete(c);
    pumpDir(c, c.up);
    if (!c.err) pumpDir(c, c.down);
    if (c.err || (c.up.shut && c.down.shut)) finish(c);
  };
  const drainRing = () => {
    let h = Atomics.load(R, 0);
    const t = Atomics.load(R, 1);
    while (h < t) {
      const base = 2 + (h % CAP) * 4;
      const op = R[base], slot = R[base + 1], a = R[base + 2], b = R[base + 3];
      h++;
      if (op === 1) {
        const up = mkdir(a, b, 0), down = mkdir(b, a, 1);
        const c = { slot, a, b, up, down, done: false, err: undefined };
        if (!up || !down) { c.up = up ?? { pr: -1, pw: -1, bytes: 0 }; c.down = down ?? { pr: -1, pw: -1, bytes: 0 }; c.err = 24; conns[slot] = c; finish(c); continue; }
        conns[slot] = c;
        ctl(1, a, IN | OUT | ET, slot * 2); ctl(1, b, IN | OUT | ET, slot * 2 + 1);
        pump(c);
      } else if (op === 2) {
        const c = conns[slot];
        if (c) { c.err = 125; finish(c); }
      }
    }
    Atomics.store(R, 0, h);
  };
  for (;;) {
    const n = L.epoll_wait(ep, ptr(evs), MAXEV, again.size > 0 ? 0 : -1);
    if (n < 0) { if (errno() === EINTR) continue; break; }
    for (let i = 0; i < n; i++) {
      const events = evv.getUint32(i * evSize, true);
      const data = Number(evv.getBigUint64(i * evSize + dataOff, true));
      if (data === WAKE) { L.read(efd, ptr(eb), 8n); drainRing(); continue; }
      const c = conns[Math.floor(data / 2)];
      if (c && !c.done) pump(c);
    }
    for (const c of [...again]) if (!c.done) pump(c);
  }
};
`;

const RING = 1024;
const SLOTS = 4096;

let lib: ReturnType<typeof openLib> | undefined;
function openLib() {
  const { i32, i64, u64, pointer: P } = FFIType;
  return dlopen("libc.so.6", {
    eventfd: { args: [i32, i32], returns: i32 },
    write: { args: [i32, P, u64], returns: i64 },
    dup: { args: [i32], returns: i32 },
    close: { args: [i32], returns: i32 },
    __errno_location: { args: [], returns: P },
  }).symbols;
}
const L = () => (lib ??= openLib());

export interface KernelConn {
  /** Bytes moved so far (client → upstream, upstream → client). */
  live(): { up: number; down: number };
  /** Close both sides now (the world is going away). */
  kill(): void;
}

type Done = (r: { up: number; down: number; err: number }) => void;

class KernelRelay {
  private worker?: Worker;
  private ring = new Int32Array(new SharedArrayBuffer(4 * (2 + RING * 4)));
  private counters = new Float64Array(new SharedArrayBuffer(8 * SLOTS * 2));
  private efd = -1;
  private free: number[] = [];
  private done = new Map<number, Done>();
  private broken = false;

  private start(): boolean {
    if (this.worker) return true;
    if (this.broken) return false;
    try {
      this.efd = L().eventfd(0, 0o2000000 | 0o4000); // EFD_CLOEXEC | EFD_NONBLOCK
      if (this.efd < 0) throw new Error("eventfd failed");
      const url = URL.createObjectURL(new Blob([WORKER_SRC], { type: "application/javascript" }));
      const w = new Worker(url);
      w.onmessage = (e: MessageEvent<{ slot: number; up: number; down: number; err: number }>) => {
        const m = e.data;
        const cb = this.done.get(m.slot);
        this.done.delete(m.slot);
        this.counters[m.slot * 2] = 0;
        this.counters[m.slot * 2 + 1] = 0;
        this.free.push(m.slot);
        cb?.({ up: m.up, down: m.down, err: m.err });
      };
      w.onerror = () => {
        this.broken = true;
      };
      (w as unknown as { unref?: () => void }).unref?.();
      const x64 = process.arch === "x64";
      w.postMessage({ ring: this.ring.buffer, counters: this.counters.buffer, efd: this.efd, evSize: x64 ? 12 : 16, dataOff: x64 ? 4 : 8 });
      this.worker = w;
      for (let i = SLOTS - 1; i >= 0; i--) this.free.push(i);
      return true;
    } catch {
      this.broken = true;
      return false;
    }
  }

  private push(op: number, slot: number, a = -1, b = -1): boolean {
    const h = Atomics.load(this.ring, 0);
    const t = Atomics.load(this.ring, 1);
    if (t - h >= RING) return false;
    const base = 2 + (t % RING) * 4;
    this.ring[base] = op;
    this.ring[base + 1] = slot;
    this.ring[base + 2] = a;
    this.ring[base + 3] = b;
    Atomics.store(this.ring, 1, t + 1);
    const one = new BigUint64Array([1n]);
    L().write(this.efd, ptr(one), 8n);
    return true;
  }

  /**
   * Relay `clientFd` ↔ `upstreamFd` (both owned by the relay from here on, closed at the end).
   * null = not available (no worker, no slot, ring full): the caller keeps the fds.
   */
  relay(clientFd: number, upstreamFd: number, onDone: Done): KernelConn | null {
    if (!this.start() || this.free.length === 0) return null;
    const slot = this.free.pop()!;
    if (!this.push(1, slot, clientFd, upstreamFd)) {
      this.free.push(slot);
      return null;
    }
    this.done.set(slot, onDone);
    return {
      live: () => ({ up: this.counters[slot * 2]!, down: this.counters[slot * 2 + 1]! }),
      kill: () => {
        if (this.done.has(slot)) this.push(2, slot);
      },
    };
  }
}

let relay: KernelRelay | undefined;
/** SUBSTRATE_EGRESS_KERNEL_RELAY=0 turns it off (every connection through splice.ts). */
export function kernelRelay(): KernelRelay | null {
  if (process.env.SUBSTRATE_EGRESS_KERNEL_RELAY === "0") return null;
  return (relay ??= new KernelRelay());
}

/** write(2) on a raw non-blocking fd: the bytes it did not take (EAGAIN or an error). */
export function writeRaw(fd: number, b: Uint8Array): Uint8Array {
  let off = 0;
  while (off < b.length) {
    const n = Number(L().write(fd, ptr(b.subarray(off)), BigInt(b.length - off)));
    if (n <= 0) break;
    off += n;
  }
  return b.subarray(off);
}

export const dupFd = (fd: number): number => L().dup(fd);
export const closeRaw = (fd: number): void => void (fd >= 0 && L().close(fd));
void read;
