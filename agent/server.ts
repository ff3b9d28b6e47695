/**
 * Serves the Hono app on a Unix socket: either the one systemd passes us (socket
 * activation: LISTEN_FDS=1, LISTEN_PID=our pid, fd 3) or one we bind ourselves.
 *
 * Trap (measured, Bun 1.4.4): `Bun.serve({ fd: 3 })` silently ignores `fd` and listens on
 * TCP *:3000. We take fd 3 with node:net and hand each connection to an http.Server, then
 * ASSERT from /proc that we listen on a Unix socket and on no TCP port; otherwise we refuse
 * to run.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import { clearStaleSocket } from "../src/sys/unix-socket.ts";
import { chmodSync, chownSync, readdirSync, readFileSync, readlinkSync, unlinkSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type { Duplex } from "node:stream";
import { getRequestListener } from "@hono/node-server";
import { notePeer } from "./caller.ts";
import type { Hono } from "hono";

export type ListenMode = "socket_activation" | "bind";

export interface ListenOptions {
  /** Path to bind when not socket-activated. */
  path: string;
  /** Socket file mode when we bind (0660 default: root + group substrate). */
  mode?: number;
  /** Group given the socket when it exists (default "substrate"). */
  group?: string;
  env?: NodeJS.ProcessEnv;
}

export interface Listening {
  mode: ListenMode;
  path: string;
  http: HttpServer;
  close(): Promise<void>;
}

export class ListenError extends Error {
  override name = "ListenError";
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/** sd_listen_fds(3): true when systemd handed us exactly fd 3. */
export function socketActivated(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.LISTEN_FDS === "1" && env.LISTEN_PID === String(process.pid);
}

export function groupId(name: string): number | null {
  try {
    for (const line of readFileSync("/etc/group", "utf8").split("\n")) {
      const [n, , gid] = line.split(":");
      if (n === name && gid) return Number(gid);
    }
  } catch {}
  return null;
}

const socketInodes = (): Set<string> => {
  const out = new Set<string>();
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m) out.add(m[1]!);
    } catch {}
  }
  return out;
};

/** Inodes of our TCP sockets in LISTEN state (st == 0A). */
function tcpListeners(ours: Set<string>): string[] {
  const found: string[] = [];
  for (const f of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(f, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] === "0A" && ours.has(cols[9] ?? "")) found.push(`${f}:${cols[1]}`);
    }
  }
  return found;
}

/** Our listening Unix sockets (flag __SO_ACCEPTCON = 00010000), with their paths. */
function unixListeners(ours: Set<string>): { inode: string; path: string }[] {
  const out: { inode: string; path: string }[] = [];
  for (const line of readFileSync("/proc/net/unix", "utf8").split("\n").slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length >= 7 && ours.has(cols[6]!) && cols[3] === "00010000") out.push({ inode: cols[6]!, path: cols[7] ?? "" });
  }
  return out;
}

/** Refuse to serve anywhere but a Unix socket (see the trap above). */
export function assertUnixOnly(expectPath: string | null): void {
  const ours = socketInodes();
  const tcp = tcpListeners(ours);
  if (tcp.length) throw new ListenError(`refusing to run: the agent is listening on TCP (${tcp.join(", ")}); it must only serve a Unix socket`, 1);
  const unix = unixListeners(ours);
  if (unix.length === 0) throw new ListenError("refusing to run: no listening Unix socket found for the agent", 1);
  if (expectPath !== null && !unix.some((u) => u.path === expectPath))
    throw new ListenError(`refusing to run: expected to listen on ${expectPath}, found ${unix.map((u) => u.path || "<unnamed>").join(", ")}`, 1);
}

/** Replace a stale socket file; never one a live agent serves, never a non-socket. */
const clearStale = (path: string): Promise<void> =>
  clearStaleSocket(path, (problem, message) =>
    problem === "in_use" ? new ListenError(`another agent is already serving ${path}`, 3) : new ListenError(message, 2),
  );

export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

export async function listen(app: Hono, o: ListenOptions, onUpgrade?: UpgradeHandler): Promise<Listening> {
  const http = createHttpServer(
    // overrideGlobalObjects: false — by default @hono/node-server swaps the process-wide
    // Response for its own class, after which Bun.serve rejects every Response it is given.
    getRequestListener(app.fetch, { overrideGlobalObjects: false }),
  );
  http.keepAliveTimeout = 30_000;
  // Bounded time to send headers: a slowloris client cannot hold a connection forever.
  http.headersTimeout = 15_000;
  http.requestTimeout = 0;
  if (onUpgrade) http.on("upgrade", onUpgrade);
  // Issue 13: who connected (SO_PEERCRED), recorded once per connection for the routes.
  const net: Server = createServer((s: Socket) => {
    notePeer(s);
    http.emit("connection", s);
  });
  const activated = socketActivated(o.env);
  let path = o.path;
  if (activated) {
    await new Promise<void>((resolve, reject) => {
      net.once("error", reject);
      net.listen({ fd: 3 }, () => resolve());
    });
    const addr = net.address();
    path = typeof addr === "string" && addr ? addr : o.path;
    assertUnixOnly(null);
  } else {
    mkdirSync(dirname(path), { recursive: true });
    await clearStale(path);
    await new Promise<void>((resolve, reject) => {
      net.once("error", (e: NodeJS.ErrnoException) =>
        reject(new ListenError(`cannot listen on ${path}: ${e.message}`, e.code === "EACCES" ? 4 : 1)),
      );
      net.listen(path, () => resolve());
    });
    chmodSync(path, o.mode ?? 0o660);
    const gid = groupId(o.group ?? "substrate");
    if (gid !== null && process.getuid?.() === 0) chownSync(path, 0, gid);
    assertUnixOnly(path);
  }
  return {
    mode: activated ? "socket_activation" : "bind",
    path,
    http,
    close: () =>
      new Promise<void>((resolve) => {
        net.close(() => resolve());
        http.closeAllConnections?.();
        if (!activated) {
          try {
            unlinkSync(path);
          } catch {}
        }
      }),
  };
}
