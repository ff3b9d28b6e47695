/**
 * In-process SSH forwards of the guest's /run/substrate.sock (spec P1.2 SSH UDS / SSH TCP,
 * without an `ssh -L` child process): one ssh2 connection, a local listener (Unix socket
 * in a 0700 directory, or 127.0.0.1:PORT), and per accepted connection one
 * `direct-streamlocal@openssh.com` channel to the guest socket (sshd needs
 * AllowStreamLocalForwarding, on by default). Everything lives in this process, so there
 * is no orphan to reap; `close()` (also run on process exit) removes the socket file.
 */
import { clearStaleSocket } from "../sys/unix-socket.ts";
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, unlinkSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { dirname } from "node:path";
import { Client } from "ssh2";
import type { SshEndpoint } from "./ssh-config.ts";

export class ForwardError extends Error {
  override name = "ForwardError";
}

export async function sshConnect(ep: SshEndpoint, timeoutMs = 20_000): Promise<Client> {
  let privateKey: Buffer;
  try {
    privateKey = readFileSync(ep.identityFile);
  } catch (e) {
    throw new ForwardError(`cannot read the Lima SSH key ${ep.identityFile}: ${(e as Error).message}`);
  }
  return await new Promise<Client>((resolve, reject) => {
    const c = new Client();
    const fail = (e: Error) => {
      c.removeAllListeners("ready");
      c.end();
      reject(new ForwardError(`SSH to ${ep.user}@${ep.host}:${ep.port} failed: ${e.message}`));
    };
    c.once("ready", () => {
      c.removeListener("error", fail);
      // Later errors (VM stopped mid-run) must not crash the process; requests then fail.
      c.on("error", () => {});
      resolve(c);
    });
    c.once("error", fail);
    c.connect({
      host: ep.host,
      port: ep.port,
      username: ep.user,
      privateKey,
      readyTimeout: timeoutMs,
      keepaliveInterval: 15_000,
      // Lima's own choice (StrictHostKeyChecking no): see ssh-config.ts for the trade-off.
      hostVerifier: () => true,
    });
  });
}

export interface Forward {
  kind: "ssh-uds" | "ssh-tcp";
  /** Unix socket path (ssh-uds) or "127.0.0.1:PORT" (ssh-tcp). */
  address: string;
  port?: number;
  close(): void;
}

function pipeToGuest(c: Client, guestSocket: string, local: Socket): void {
  local.pause();
  c.openssh_forwardOutStreamLocal(guestSocket, (err, ch) => {
    if (err) {
      local.destroy();
      return;
    }
    local.pipe(ch).pipe(local);
    local.on("error", () => ch.close());
    ch.on("error", () => local.destroy());
    ch.on("close", () => local.destroy());
    local.resume();
  });
}

const listening = (srv: Server, arg: { path: string } | { port: number; host: string }) =>
  new Promise<void>((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(arg, () => {
      srv.removeListener("error", reject);
      resolve();
    });
  });

function onExit(fn: () => void): () => void {
  const h = () => fn();
  process.on("exit", h);
  return () => process.off("exit", h);
}

/** A socket file of ours that nobody answers on any more is stale: unlink before binding. */
const clearStale = (path: string): Promise<void> =>
  clearStaleSocket(path, (problem) =>
    new ForwardError(problem === "in_use" ? `${path} is in use by another process` : `${path} exists and is not a socket; move it away`),
  );

/** An idempotent close for a forward, also run at process exit: server, extra cleanup, SSH client. */
function closer(srv: Server, c: Client, extra: () => void = () => {}): () => void {
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    off();
    srv.close();
    extra();
    c.end();
  };
  const off = onExit(close);
  return close;
}

/** Listens on `hostPath` (its directory made 0700) and forwards to the guest socket. */
export async function forwardUnixSocket(c: Client, guestSocket: string, hostPath: string): Promise<Forward> {
  const dir = dirname(hostPath);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700); // an existing dir keeps its mode otherwise
  await clearStale(hostPath);
  const srv = createServer((s) => pipeToGuest(c, guestSocket, s));
  try {
    await listening(srv, { path: hostPath });
  } catch (e) {
    throw new ForwardError(`cannot listen on ${hostPath}: ${(e as Error).message}`);
  }
  const close = closer(srv, c, () => {
    try {
      if (existsSync(hostPath)) unlinkSync(hostPath);
    } catch {}
  });
  return { kind: "ssh-uds", address: hostPath, close };
}

/** Listens on 127.0.0.1:port (loopback only) and forwards to the guest socket. */
export async function forwardTcp(c: Client, guestSocket: string, port: number): Promise<Forward> {
  const srv = createServer((s) => pipeToGuest(c, guestSocket, s));
  try {
    await listening(srv, { port, host: "127.0.0.1" });
  } catch (e) {
    throw new ForwardError(`cannot listen on 127.0.0.1:${port}: ${(e as Error).message}`);
  }
  const actual = (srv.address() as { port: number }).port;
  const close = closer(srv, c);
  return { kind: "ssh-tcp", address: `127.0.0.1:${actual}`, port: actual, close };
}
