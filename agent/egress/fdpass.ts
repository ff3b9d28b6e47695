/**
 * Socket handoff between the in-world helper and the gateway (issue 15, one relay instead of
 * two): the helper accepts a world's TCP connection and passes the accepted socket itself to
 * the gateway with SCM_RIGHTS, and the gateway splices it directly with the upstream socket.
 * Bun 1.4.4 has no API for ancillary data, but it adopts an existing descriptor as a socket
 * (`Bun.connect({ fd })`, what its own node:net/IPC handle passing uses; measured), so only
 * the few calls below go through bun:ffi on libc.
 *
 * The channel is a SOCK_SEQPACKET Unix socket per world (`<world dir>/fd.sock`, next to the
 * gateway socket, in the same 0700 directory): message boundaries are kept and each message
 * carries its descriptor. Bun never reads it (a plain read would drop the descriptor): the
 * gateway reads it with `recvmsg(MSG_DONTWAIT)` only when the helper's request line on the
 * control connection says a message is waiting. The helper sends the message BEFORE it
 * writes that line, and a Unix socket's send queues the message at the receiver at once, so
 * the message is always there when the line is read — no polling, no thread.
 *
 * Layouts (LP64 Linux, x86_64 and aarch64 alike):
 *   struct msghdr  { void *name; u32 namelen; pad; struct iovec *iov; size_t iovlen;
 *                    void *control; size_t controllen; int flags; pad }        56 bytes
 *   struct iovec   { void *base; size_t len }                                   16 bytes
 *   struct cmsghdr { size_t len; int level; int type; data… }                    16 + data
 */
import { dlopen, FFIType, ptr, read } from "bun:ffi";
import { closeSync, fstatSync, statSync } from "node:fs";

const AF_UNIX = 1;
const AF_INET = 2;
const SOCK_STREAM = 1;
const SOCK_SEQPACKET = 5;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const SO_TYPE = 3;
const SO_ACCEPTCONN = 30;
const SO_PROTOCOL = 38;
const SO_DOMAIN = 39;
const IPPROTO_TCP = 6;
const MSG_DONTWAIT = 0x40;
const MSG_TRUNC = 0x20;
const MSG_CTRUNC = 0x8;
const MSG_NOSIGNAL = 0x4000;
const MSG_CMSG_CLOEXEC = 0x40000000;
const SIOCGSKNS = 0x894c;
export const EAGAIN = 11;

let lib: ReturnType<typeof open> | undefined;
function open() {
  const { i32, i64, u32, u64, pointer: P } = FFIType;
  return dlopen("libc.so.6", {
    socket: { args: [i32, i32, i32], returns: i32 },
    bind: { args: [i32, P, u32], returns: i32 },
    listen: { args: [i32, i32], returns: i32 },
    accept4: { args: [i32, P, P, i32], returns: i32 },
    connect: { args: [i32, P, u32], returns: i32 },
    sendmsg: { args: [i32, P, i32], returns: i64 },
    recvmsg: { args: [i32, P, i32], returns: i64 },
    getsockopt: { args: [i32, i32, i32, P, P], returns: i32 },
    getpeername: { args: [i32, P, P], returns: i32 },
    getsockname: { args: [i32, P, P], returns: i32 },
    ioctl: { args: [i32, u64, u64], returns: i32 },
    close: { args: [i32], returns: i32 },
    __errno_location: { args: [], returns: P },
  }).symbols;
}
const L = () => (lib ??= open());
/** Load the symbols ahead of time (the warm helper, the agent at its first world). */
export const preloadFdpass = (): void => void L();

const errno = (): number => {
  const p = L().__errno_location();
  return p === null ? 0 : read.i32(p, 0);
};

function sockaddrUn(path: string): Uint8Array {
  const p = Buffer.from(path, "utf8");
  if (p.length >= 108) throw new Error(`socket path too long: ${path}`);
  const sa = new Uint8Array(110);
  sa[0] = AF_UNIX; // sa_family (little-endian u16)
  sa.set(p, 2);
  return sa;
}

export const closeFd = (fd: number): void => {
  if (fd >= 0) L().close(fd);
};

/** The gateway's end: a non-blocking SOCK_SEQPACKET listener at `path`. */
export function listenSeqpacket(path: string): number {
  const l = L();
  const fd = l.socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new Error(`socket(AF_UNIX, SOCK_SEQPACKET): errno ${errno()}`);
  const sa = sockaddrUn(path);
  if (l.bind(fd, ptr(sa), 2 + Buffer.byteLength(path) + 1) !== 0 || l.listen(fd, 16) !== 0) {
    const e = errno();
    l.close(fd);
    throw new Error(`bind/listen ${path}: errno ${e}`);
  }
  return fd;
}

/** One pending connection of a listener, or -1 (none waiting). Non-blocking, close-on-exec. */
export const acceptNonBlocking = (lfd: number): number => L().accept4(lfd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);

/** The helper's end: a non-blocking SOCK_SEQPACKET connection to `path` (throws when refused). */
export function connectSeqpacket(path: string): number {
  const l = L();
  const fd = l.socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new Error(`socket(AF_UNIX, SOCK_SEQPACKET): errno ${errno()}`);
  const sa = sockaddrUn(path);
  if (l.connect(fd, ptr(sa), 2 + Buffer.byteLength(path) + 1) !== 0) {
    const e = errno();
    l.close(fd);
    throw new Error(`connect ${path}: errno ${e}`);
  }
  return fd;
}

/** sendmsg(fd, payload, [passFd]); 0 on success, else the errno (EAGAIN: the gateway's queue is full). */
export function sendWithFd(fd: number, payload: Uint8Array, passFd?: number): number {
  const iov = new BigUint64Array([BigInt(ptr(payload)), BigInt(payload.length)]);
  const ctl = new Uint8Array(24); // CMSG_SPACE(sizeof(int))
  const msg = new DataView(new ArrayBuffer(56));
  msg.setBigUint64(16, BigInt(ptr(iov)), true);
  msg.setBigUint64(24, 1n, true);
  if (passFd !== undefined) {
    const c = new DataView(ctl.buffer);
    c.setBigUint64(0, 20n, true); // CMSG_LEN(4)
    c.setInt32(8, SOL_SOCKET, true);
    c.setInt32(12, SCM_RIGHTS, true);
    c.setInt32(16, passFd, true);
    msg.setBigUint64(32, BigInt(ptr(ctl)), true);
    msg.setBigUint64(40, 24n, true);
  }
  const n = Number(L().sendmsg(fd, ptr(new Uint8Array(msg.buffer)), MSG_DONTWAIT | MSG_NOSIGNAL));
  return n === payload.length ? 0 : n < 0 ? errno() : EAGAIN;
}

export interface Received {
  data: Uint8Array;
  /** Descriptors that came with it (close-on-exec, owned by the caller). */
  fds: number[];
  /** The message or its descriptors did not fit (what did not fit is gone). */
  truncated: boolean;
}

const MAX_FDS = 4;
/** recvmsg(MSG_DONTWAIT): one message, or null when none is waiting (or the peer is gone: `gone`). */
let rbuf: Uint8Array | undefined;
const rctl = new Uint8Array(16 + 4 * MAX_FDS + 8);
const rmsg = new Uint8Array(56);
export function recvWithFds(fd: number, max = 1 << 17): Received | null | "gone" {
  // One receive buffer for all calls (the data is copied out below): no 128 KiB allocation per connection.
  if (!rbuf || rbuf.length < max) rbuf = new Uint8Array(Math.max(max, 1 << 17));
  const buf = rbuf;
  const iov = new BigUint64Array([BigInt(ptr(buf)), BigInt(max)]);
  const ctl = rctl;
  ctl.fill(0);
  const msgBuf = rmsg;
  msgBuf.fill(0);
  const msg = new DataView(msgBuf.buffer);
  msg.setBigUint64(16, BigInt(ptr(iov)), true);
  msg.setBigUint64(24, 1n, true);
  msg.setBigUint64(32, BigInt(ptr(ctl)), true);
  msg.setBigUint64(40, BigInt(ctl.length), true);
  const n = Number(L().recvmsg(fd, ptr(msgBuf), MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
  if (n < 0) return errno() === EAGAIN ? null : "gone";
  if (n === 0) return "gone";
  const flags = msg.getInt32(48, true);
  const controllen = Number(msg.getBigUint64(40, true));
  const fds: number[] = [];
  const c = new DataView(ctl.buffer);
  for (let off = 0; off + 16 <= controllen; ) {
    const len = Number(c.getBigUint64(off, true));
    if (len < 16) break;
    if (c.getInt32(off + 8, true) === SOL_SOCKET && c.getInt32(off + 12, true) === SCM_RIGHTS) {
      for (let p = off + 16; p + 4 <= off + len; p += 4) fds.push(c.getInt32(p, true));
    }
    off += (len + 7) & ~7;
  }
  return { data: buf.slice(0, n), fds, truncated: (flags & (MSG_TRUNC | MSG_CTRUNC)) !== 0 };
}

function sockopt(fd: number, level: number, name: number): number | null {
  const v = new Int32Array(1);
  const len = new Uint32Array([4]);
  return L().getsockopt(fd, level, name, ptr(v), ptr(len)) === 0 ? v[0]! : null;
}

function inetName(fd: number, peer: boolean): { addr: string; port: number } | null {
  const sa = new Uint8Array(16);
  const len = new Uint32Array([16]);
  const rc = peer ? L().getpeername(fd, ptr(sa), ptr(len)) : L().getsockname(fd, ptr(sa), ptr(len));
  if (rc !== 0 || (sa[0]! | (sa[1]! << 8)) !== AF_INET) return null;
  return { addr: `${sa[4]}.${sa[5]}.${sa[6]}.${sa[7]}`, port: (sa[2]! << 8) | sa[3]! };
}

/** The destination a redirected (nft `redirect`) connection was originally sent to. */
export function originalDstOf(fd: number): { ip: string; port: number } | null {
  const sa = new Uint8Array(16);
  const len = new Uint32Array([16]);
  if (L().getsockopt(fd, 0 /* SOL_IP */, 80 /* SO_ORIGINAL_DST */, ptr(sa), ptr(len)) !== 0) return null;
  return { ip: `${sa[4]}.${sa[5]}.${sa[6]}.${sa[7]}`, port: (sa[2]! << 8) | sa[3]! };
}

/**
 * The network namespace a socket lives in, as (dev, ino) of its nsfs inode (SIOCGSKNS:
 * needs CAP_NET_ADMIN over that namespace — a root agent, or the rootless agent that owns
 * the world's user namespace). null when the kernel refuses.
 */
export function netnsOfSocket(fd: number): { dev: number; ino: number } | null {
  const ns = L().ioctl(fd, BigInt(SIOCGSKNS), 0n);
  if (ns < 0) return null;
  try {
    const st = fstatSync(ns);
    return { dev: st.dev, ino: st.ino };
  } finally {
    closeSync(ns);
  }
}

/** (dev, ino) of /proc/<pid>/ns/net. */
export function netnsOfPid(pid: number): { dev: number; ino: number } | null {
  try {
    const st = statSync(`/proc/${pid}/ns/net`);
    return { dev: st.dev, ino: st.ino };
  } catch {
    return null;
  }
}

export interface PassedSocket {
  local: { addr: string; port: number };
  peer: { addr: string; port: number };
}

/**
 * What a passed descriptor must be before the gateway touches it: a connected (not
 * listening) IPv4 TCP socket, accepted on one of the helper's loopback listeners, in the
 * world's own network namespace (when the kernel lets us ask). Returns why not otherwise.
 */
export function checkPassedSocket(fd: number, o: { netns: { dev: number; ino: number } | null; ports: readonly number[] }): PassedSocket | string {
  if (sockopt(fd, SOL_SOCKET, SO_DOMAIN) !== AF_INET) return "not an IPv4 socket";
  if (sockopt(fd, SOL_SOCKET, SO_TYPE) !== SOCK_STREAM) return "not a stream socket";
  if (sockopt(fd, SOL_SOCKET, SO_PROTOCOL) !== IPPROTO_TCP) return "not TCP";
  if (sockopt(fd, SOL_SOCKET, SO_ACCEPTCONN) !== 0) return "a listening socket";
  const peer = inetName(fd, true);
  if (!peer) return "not connected";
  const local = inetName(fd, false);
  if (!local || local.addr !== "127.0.0.1" || !o.ports.includes(local.port)) return `not accepted on the helper's listeners (${local ? `${local.addr}:${local.port}` : "?"})`;
  if (o.netns) {
    const ns = netnsOfSocket(fd);
    if (!ns) return "its network namespace cannot be read";
    if (ns.dev !== o.netns.dev || ns.ino !== o.netns.ino) return "not a socket of this world's network namespace";
  }
  return { local, peer };
}
