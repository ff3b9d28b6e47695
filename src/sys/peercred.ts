/**
 * SO_PEERCRED on a connected Unix socket: who (pid, uid, gid) is on the other end, as the
 * kernel recorded it at connect(2) time — not something the client can claim.
 *
 * Bun 1.4.4 has no API for it, but a node:net Socket accepted by a node:net server exposes
 * its descriptor as `socket._handle.fd` (measured), so we ask the kernel directly with
 * getsockopt(2) through bun:ffi. When the fd is not available we fail closed.
 */
import { ptr } from "bun:ffi";
import type { Socket } from "node:net";
import { NR, SyscallError, errno, sys } from "./libc.ts";

const SOL_SOCKET = 1n;
const SO_PEERCRED = 17n;

export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

/** getsockopt(fd, SOL_SOCKET, SO_PEERCRED): struct ucred {pid_t pid; uid_t uid; gid_t gid}. */
export function peerCredOfFd(fd: number): PeerCred {
  const cred = new Int32Array(3);
  const len = new Uint32Array([12]);
  const rc = sys(NR.getsockopt, BigInt(fd), SOL_SOCKET, SO_PEERCRED, BigInt(ptr(cred)), BigInt(ptr(len)));
  if (rc < 0) throw new SyscallError("getsockopt SO_PEERCRED", errno());
  return { pid: cred[0]!, uid: cred[1]! >>> 0, gid: cred[2]! >>> 0 };
}

/** The descriptor behind a node:net Socket (undefined when the runtime hides it). */
export function socketFd(s: Socket): number | undefined {
  const fd = (s as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === "number" && fd >= 0 ? fd : undefined;
}

export function peerCred(s: Socket): PeerCred | undefined {
  const fd = socketFd(s);
  return fd === undefined ? undefined : peerCredOfFd(fd);
}
