/**
 * Header deadline for the agent's and the proxy's HTTP servers (slowloris guard).
 *
 * Trap (measured, Bun 1.4.4): node:http's `headersTimeout` is accepted but not enforced — a
 * client that sends half a request line and stalls keeps its connection (and an fd) forever.
 * So we keep our own deadline: from accept (and again after every response, while a
 * keep-alive connection idles) the client has `ms` to deliver a complete request head;
 * otherwise it gets a 408 JSON error body and the connection is closed. WebSocket upgrades
 * and requests in progress (long executes, streaming bodies) are not limited.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { errorBody } from "../contract/index.ts";

export const DEFAULT_HEADER_DEADLINE_MS = 15_000;

export function headerDeadlineMs(env: NodeJS.ProcessEnv = process.env): number {
  const n = Number(env.SUBSTRATE_HEADER_DEADLINE_MS);
  return Number.isFinite(n) && n > 0 ? n : DEFAULT_HEADER_DEADLINE_MS;
}

export function enforceHeaderDeadline(http: Server, ms = headerDeadlineMs()): void {
  const timers = new WeakMap<Socket, ReturnType<typeof setTimeout>>();
  const body = JSON.stringify(errorBody("bad_request", `request head not received within ${ms} ms`, "send a complete HTTP/1.1 request"));
  const arm = (s: Socket) => {
    disarm(s);
    if (s.destroyed) return;
    const t = setTimeout(() => {
      try {
        s.end(`HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      } catch {}
      setTimeout(() => s.destroy(), 1000).unref();
    }, ms);
    t.unref();
    timers.set(s, t);
  };
  const disarm = (s: Socket) => {
    const t = timers.get(s);
    if (t) clearTimeout(t);
    timers.delete(s);
  };
  http.on("connection", (s: Socket) => {
    arm(s);
    s.once("close", () => disarm(s));
  });
  http.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const s = req.socket as Socket;
    disarm(s);
    // keep-alive: the next request head is due within the deadline again
    res.once("finish", () => {
      if (!s.destroyed) arm(s);
    });
  });
  http.on("upgrade", (req: IncomingMessage) => disarm(req.socket as Socket));
}
