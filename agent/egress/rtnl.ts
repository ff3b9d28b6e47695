/**
 * The three rtnetlink requests a world's netns needs (`ip link set lo up`, `ip addr add
 * 198.18.0.1/32 dev lo`, `ip route add local 0.0.0.0/0 dev lo table local`), sent by the
 * egress helper itself from the thread that joined the world's netns: no `ip` process on a
 * world's creation path. Each request asks for an ACK; any error is thrown with its errno.
 * Equivalent to netns.ts `worldIpBatch()` (which the rootless spawner runs with `ip`).
 */
import { dlopen, FFIType, ptr } from "bun:ffi";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0x80000;
const NETLINK_ROUTE = 0;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const NLMSG_ERROR = 2;
const RTM_NEWLINK = 16;
const RTM_NEWADDR = 20;
const RTM_NEWROUTE = 24;
const AF_INET = 2;
const IFF_UP = 1;
const LO_INDEX = 1; // the loopback device is ifindex 1 in every network namespace
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const RTA_OIF = 4;
const RT_TABLE_LOCAL = 255;
const RTPROT_BOOT = 3;
const RT_SCOPE_HOST = 254;
const RTN_LOCAL = 2;

let lib: ReturnType<typeof open> | undefined;
function open() {
  const { i32, u64, i64, pointer: P } = FFIType;
  return dlopen("libc.so.6", {
    socket: { args: [i32, i32, i32], returns: i32 },
    send: { args: [i32, P, u64, i32], returns: i64 },
    recv: { args: [i32, P, u64, i32], returns: i64 },
    close: { args: [i32], returns: i32 },
    __errno_location: { args: [], returns: P },
  }).symbols;
}

const align4 = (n: number) => (n + 3) & ~3;

function attr(type: number, payload: Buffer): Buffer {
  const b = Buffer.alloc(align4(4 + payload.length));
  b.writeUInt16LE(4 + payload.length, 0);
  b.writeUInt16LE(type, 2);
  payload.copy(b, 4);
  return b;
}

function message(type: number, flags: number, seq: number, body: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(16 + body.length, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(flags, 6);
  h.writeUInt32LE(seq, 8);
  h.writeUInt32LE(0, 12);
  return Buffer.concat([h, body]);
}

const ipBytes = (ip: string) => Buffer.from(ip.split(".").map(Number));
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
};

/** lo up, `addr` /32 on lo, `local 0.0.0.0/0 dev lo table local`; in the calling thread's netns. */
export function setupLoopback(addr: string): void {
  lib ??= open();
  const l = lib;
  const fd = l.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) throw new Error("rtnetlink: socket failed");
  try {
    // struct ifinfomsg { u8 family, pad; u16 type; i32 index; u32 flags, change }
    const ifi = Buffer.alloc(16);
    ifi.writeInt32LE(LO_INDEX, 4);
    ifi.writeUInt32LE(IFF_UP, 8);
    ifi.writeUInt32LE(IFF_UP, 12);
    // struct ifaddrmsg { u8 family, prefixlen, flags, scope; u32 index }
    const ifa = Buffer.alloc(8);
    ifa[0] = AF_INET;
    ifa[1] = 32;
    ifa[3] = RT_SCOPE_HOST;
    ifa.writeUInt32LE(LO_INDEX, 4);
    // struct rtmsg { u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags }
    const rtm = Buffer.alloc(12);
    rtm[0] = AF_INET;
    rtm[4] = RT_TABLE_LOCAL;
    rtm[5] = RTPROT_BOOT;
    rtm[6] = RT_SCOPE_HOST;
    rtm[7] = RTN_LOCAL;
    const reqs: Array<[string, Buffer]> = [
      ["link set lo up", message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, 1, ifi)],
      [`addr add ${addr}/32 dev lo`, message(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, 2, Buffer.concat([ifa, attr(IFA_LOCAL, ipBytes(addr)), attr(IFA_ADDRESS, ipBytes(addr))]))],
      ["route add local 0.0.0.0/0 dev lo table local", message(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, 3, Buffer.concat([rtm, attr(RTA_OIF, u32(LO_INDEX))]))],
    ];
    const buf = Buffer.alloc(8192);
    for (const [what, m] of reqs) {
      if (Number(l.send(fd, ptr(m), m.length, 0)) !== m.length) throw new Error(`rtnetlink: ${what}: send failed`);
      const n = Number(l.recv(fd, ptr(buf), buf.length, 0));
      if (n < 20 || buf.readUInt16LE(4) !== NLMSG_ERROR) throw new Error(`rtnetlink: ${what}: no acknowledgement`);
      const err = buf.readInt32LE(16);
      if (err !== 0) throw new Error(`rtnetlink: ${what}: errno ${-err}`);
    }
  } finally {
    l.close(fd);
  }
}
