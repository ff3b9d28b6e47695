/**
 * `GET /v1/stream`: WebSocket sessions running a command in a world, PTY or pipes
 * (protocol: src/contract/stream.ts, docs/API.md#stream).
 *
 * Bytes are never re-encoded: a binary frame from the client is written to the command's
 * terminal (or stdin) as is, and every chunk the terminal produces goes out as one binary
 * frame. That is what keeps vim and fzf byte-clean (escape sequences split across chunks
 * stay split, the terminal on the far side reassembles them).
 *
 * Nothing here blocks: the PTY lives in the in-world spawner (Bun's native `terminal`, read
 * by the event loop there) and reaches us over the ctl socket as frames; we forward them.
 *
 * Sessions die with their socket unless started `detachable`: then output keeps landing in
 * a ring buffer (recent output, 256 KiB) and a new socket can `attach` and gets it replayed
 * before live output. A detached session is killed after SUBSTRATE_STREAM_DETACH_TTL_MS
 * (default 10 min) without a client; an exited one is forgotten after the same time.
 */
import type { EgressSummary } from "../src/contract/net.ts"; // issue 15 (EGRESS)
import { peerOf } from "./caller.ts";
import { SendWindow } from "./flow.ts"; // issue 18.4 (DEPLOY): back-pressure
import type { PeerCred } from "../src/sys/peercred.ts";
import type { Caller, FsDiff } from "../src/contract/world.ts";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import {
  errorBody,
  httpStatusFor,
  newStreamSessionId,
  StreamAttach,
  StreamControl,
  StreamStart,
  type ErrorCode,
  type StreamServerMessage,
} from "../src/contract/index.ts";
import { ApiError } from "../src/api/service.ts";
import { describeZodError } from "../src/api/router.ts";
import type { WorldAgentService } from "./service.ts";
import type { WorldManager } from "./world/manager.ts";
import type { WorldProcess } from "./world/session.ts";
import type { CtlExit } from "./world/ctl.ts";

export const RING_BYTES = 256 * 1024;
export const MAX_SESSIONS = 512;
/** The first control message must arrive within this time. */
const START_TIMEOUT_MS = 10_000;
const MAX_WS_PAYLOAD = 8 * 1024 * 1024;

/** Keeps the last `cap` bytes written. */
export class RingBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  truncated = false;
  constructor(private readonly cap = RING_BYTES) {}
  push(b: Uint8Array): void {
    this.chunks.push(Buffer.from(b));
    this.size += b.length;
    while (this.size > this.cap && this.chunks.length) {
      const over = this.size - this.cap;
      const first = this.chunks[0]!;
      this.truncated = true;
      if (first.length <= over) {
        this.chunks.shift();
        this.size -= first.length;
      } else {
        this.chunks[0] = first.subarray(over);
        this.size -= over;
      }
    }
  }
  contents(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

const send = (ws: WebSocket | undefined, m: StreamServerMessage): void => {
  if (ws && ws.readyState === ws.OPEN) ws.send(JSON.stringify(m));
};

/** WebSocket close codes: 4000 + the HTTP status of the error (4400, 4429, ...). */
function fail(ws: WebSocket, code: ErrorCode, message: string, hint?: string): void {
  const body = errorBody(code, message, hint).error;
  send(ws, { type: "error", ...body });
  try {
    ws.close(4000 + httpStatusFor(code), code);
  } catch {}
}

interface Session {
  id: string;
  spanId: string;
  worldId: string;
  agentId: string;
  /** Issue 13: the uid that started it; only it (or root) may attach. */
  uid: number;
  pty: boolean;
  detachable: boolean;
  proc: WorldProcess;
  ring: RingBuffer;
  client?: WebSocket;
  /** Issue 18.4 (DEPLOY): output in flight to `client`; pauses the command when it lags. */
  flow?: SendWindow;
  exit?: CtlExit;
  ttl?: ReturnType<typeof setTimeout>;
}

export interface StreamOptions {
  svc: WorldAgentService;
  worlds: WorldManager;
  log?: (msg: string) => void;
  detachTtlMs?: number;
}

export class StreamServer {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_WS_PAYLOAD });
  private readonly sessions = new Map<string, Session>();
  private readonly ttlMs: number;

  constructor(private readonly o: StreamOptions) {
    this.ttlMs = o.detachTtlMs ?? (Number(process.env.SUBSTRATE_STREAM_DETACH_TTL_MS) || 600_000);
  }

  get active(): number {
    return this.sessions.size;
  }

  /** The `upgrade` handler for agent/server.ts `listen(app, opts, onUpgrade)`. */
  readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    let path = "";
    try {
      path = new URL(req.url ?? "/", "http://localhost").pathname;
    } catch {}
    if (path !== "/v1/stream") {
      const body = JSON.stringify(errorBody("not_found", `no WebSocket route ${path || req.url}`, "the stream lives at /v1/stream"));
      socket.end(`HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      return;
    }
    socket.on("error", () => {});
    // Issue 13: the caller is the peer of the connection the upgrade came on (server.ts).
    const peer = peerOf(req.socket);
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, peer));
  };

  private onConnection(ws: WebSocket, peer?: PeerCred): void {
    let caller: Caller | undefined;
    const who = (): Caller => (caller ??= this.o.svc.callerOf(peer ? { peer } : undefined));
    ws.on("error", () => {});
    let session: Session | undefined;
    let starting = false;
    // Input that arrives while the world starts (clients need not wait for `started`).
    let early: { data: Buffer; binary: boolean }[] = [];
    let earlyBytes = 0;
    const timer = setTimeout(() => {
      if (!session && !starting) fail(ws, "bad_request", `no start or attach message within ${START_TIMEOUT_MS} ms`);
    }, START_TIMEOUT_MS);

    const onMessage = (data: RawData, isBinary: boolean) => {
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      if (starting) {
        earlyBytes += buf.length;
        if (earlyBytes > MAX_WS_PAYLOAD) return fail(ws, "payload_too_large", `more than ${MAX_WS_PAYLOAD} bytes sent before the session started`);
        early.push({ data: buf, binary: isBinary });
        return;
      }
      if (isBinary) {
        if (!session) return fail(ws, "bad_request", "binary data before start", 'send {"type":"start",...} first');
        if (session.client === ws && !session.exit) session.proc.write(buf);
        return;
      }
      let msg: unknown;
      try {
        msg = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(buf));
      } catch {
        if (!session) return fail(ws, "bad_request", "control message is not valid UTF-8 JSON");
        return send(ws, { type: "error", code: "bad_request", message: "control message is not valid UTF-8 JSON" });
      }
      const type = (msg as { type?: unknown } | null)?.type;
      if (!session) {
        if (type === "start") {
          const r = StreamStart.safeParse(msg);
          if (!r.success) return fail(ws, "bad_request", describeZodError(r.error));
          starting = true;
          clearTimeout(timer);
          let c: Caller;
          try {
            c = who();
          } catch (e) {
            const err = e as ApiError;
            return fail(ws, err.code, err.message, err.hint);
          }
          this.start(ws, r.data, c).then(
            (s) => {
              starting = false;
              session = s;
              const queued = early;
              early = [];
              for (const q of queued) onMessage(q.data, q.binary);
            },
            (e) => {
              starting = false;
              early = [];
              const err = e instanceof ApiError ? e : new ApiError("internal", `internal error: ${(e as Error).message}`);
              fail(ws, err.code, err.message, err.hint);
            },
          );
          return;
        }
        if (type === "attach") {
          const r = StreamAttach.safeParse(msg);
          if (!r.success) return fail(ws, "bad_request", describeZodError(r.error));
          clearTimeout(timer);
          try {
            session = this.attach(ws, r.data.session_id, r.data.agent_id, who().uid);
          } catch (e) {
            const err = e as ApiError;
            fail(ws, err.code, err.message, err.hint);
          }
          return;
        }
        return fail(ws, "bad_request", 'the first message must be {"type":"start",...} or {"type":"attach",...}');
      }
      if (session.client !== ws) return;
      const r = StreamControl.safeParse(msg);
      if (!r.success) return send(ws, { type: "error", code: "bad_request", message: describeZodError(r.error) });
      const c = r.data;
      if (session.exit) return;
      switch (c.type) {
        case "resize":
          if (session.pty) session.proc.resize(c.cols, c.rows);
          break;
        case "signal":
          session.proc.signal(c.signal);
          break;
        case "eof":
          session.proc.end();
          break;
        case "detach":
          if (!session.detachable) return send(ws, { type: "error", code: "bad_request", message: "this session was not started detachable" });
          this.detach(session);
          ws.close(1000, "detached");
          break;
      }
    };
    ws.on("message", onMessage);

    ws.on("close", () => {
      clearTimeout(timer);
      const s = session;
      if (!s || s.client !== ws) return;
      s.client = undefined;
      s.flow?.reset(); // issue 18.4 (DEPLOY): nobody to wait for
      if (s.exit) return this.forgetLater(s);
      if (s.detachable) return this.detach(s);
      s.proc.kill(); // spawner kills the process group on ctl close
    });
  }

  private async start(ws: WebSocket, st: StreamStart, caller: Caller): Promise<Session> {
    if (this.sessions.size >= MAX_SESSIONS)
      throw new ApiError("unavailable", `too many stream sessions (${MAX_SESSIONS})`, "close or detach-and-end some sessions first");
    const id = newStreamSessionId();
    const ring = new RingBuffer();
    let s!: Session;
    const flow = new SendWindow(); // issue 18.4 (DEPLOY)
    const out = (b: Uint8Array) => {
      ring.push(b);
      const c = s?.client;
      if (c && c.readyState === c.OPEN) c.send(b, { binary: true }, flow.track(b.length));
    };
    // Issue 17: the same start as POST /v1/execute (caller, budget, world, token, span, isolated).
    const run = await this.o.svc.start(
      { req: st, caller, ...(st.pty ? { pty: { cols: st.cols, rows: st.rows } } : {}) },
      {
        onStdout: out,
        onStderr: (b) => {
          const c = s?.client;
          if (c && c.readyState === c.OPEN) c.send(JSON.stringify({ type: "stderr", data_b64: Buffer.from(b).toString("base64") }), flow.track(b.length));
        },
      },
    );
    const proc = run.proc;
    flow.bind(proc); // issue 18.4 (DEPLOY)
    s = { id, spanId: run.spanId, worldId: run.world.id, agentId: st.agent_id, uid: caller.uid, pty: st.pty, detachable: st.detachable, proc, ring, client: ws, flow };
    let pid: number;
    try {
      pid = await proc.started;
    } catch (e) {
      await run.done.catch(() => {}); // settles the budget; the error is the start failure below
      const code = (e as { code?: string }).code;
      throw new ApiError(code === "not_found" ? "bad_request" : "internal", (e as Error).message);
    }
    this.sessions.set(id, s);
    // The client may have gone while the world started.
    if (ws.readyState !== ws.OPEN) {
      s.client = undefined;
      if (s.detachable) this.detach(s);
      else proc.kill();
    }
    send(ws, { type: "started", session_id: id, span_id: run.spanId, world_id: run.world.id, pid, pty: st.pty, detachable: st.detachable });
    const finish = (exit: CtlExit, fs_diff?: FsDiff, egress?: EgressSummary) => {
      s.exit = exit;
      const c = s.client;
      if (c) {
        // issue 15 (EGRESS): the command's egress summary, for the CLI's end-of-command line
        send(c, { type: "exit", code: exit.exit, signal: exit.signal, ...(exit.timed_out ? { timed_out: true } : {}), ...(fs_diff ? { fs_diff } : {}), ...(egress ? { egress } : {}) });
        c.close(1000, "exit");
      }
      this.forgetLater(s);
    };
    run.done.then(
      (r) => finish(r.exit, r.fs_diff, r.egress),
      (e: Error) => {
        // Our own kill (client gone) drops the ctl connection too; anything else means the
        // world went away under the command (agent shutdown, world deleted).
        const ours = !s.client && !s.detachable;
        finish({ exit: 1, signal: null });
        if (!ours) this.o.log?.(`stream ${id}: ${e.message}`);
      },
    );
    return s;
  }

  private attach(ws: WebSocket, id: string, agentId: string, uid: number): Session {
    const s = this.sessions.get(id);
    if (!s || s.agentId !== agentId.trim() || (uid !== 0 && s.uid !== uid)) throw new ApiError("not_found", `no stream session ${id} for agent ${agentId}`, "it ended, was not detachable, or its detach TTL ran out");
    if (!s.detachable) throw new ApiError("bad_request", `session ${id} was not started detachable`);
    if (s.ttl) clearTimeout(s.ttl);
    s.ttl = undefined;
    if (s.client && s.client !== ws) fail(s.client, "bad_request", "another client attached to this session");
    s.client = ws;
    s.flow?.reset(); // issue 18.4 (DEPLOY): a new client, nothing in flight to it
    const replay = s.ring.contents();
    send(ws, { type: "attached", session_id: s.id, span_id: s.spanId, replayed_bytes: replay.length, truncated: s.ring.truncated });
    if (replay.length) ws.send(replay, { binary: true });
    if (s.exit) {
      send(ws, { type: "exit", code: s.exit.exit, signal: s.exit.signal, ...(s.exit.timed_out ? { timed_out: true } : {}) });
      ws.close(1000, "exit");
    }
    return s;
  }

  private detach(s: Session): void {
    s.client = undefined;
    s.flow?.reset(); // issue 18.4 (DEPLOY): detached output goes to the ring only
    if (s.ttl) clearTimeout(s.ttl);
    s.ttl = setTimeout(() => {
      s.proc.kill();
      this.sessions.delete(s.id);
    }, this.ttlMs);
    s.ttl.unref?.();
  }

  /** An exited session stays re-attachable for the TTL when detached, else it goes now. */
  private forgetLater(s: Session): void {
    if (s.ttl) clearTimeout(s.ttl);
    s.ttl = undefined;
    if (s.detachable && !s.client) {
      s.ttl = setTimeout(() => this.sessions.delete(s.id), this.ttlMs);
      s.ttl.unref?.();
      return;
    }
    this.sessions.delete(s.id);
  }

  /** Agent shutdown: every session's command dies with its ctl connection. */
  close(): void {
    for (const s of this.sessions.values()) {
      if (s.ttl) clearTimeout(s.ttl);
      if (!s.exit) s.proc.kill();
      s.client?.close(1001, "agent stopping");
    }
    this.sessions.clear();
    this.wss.close();
  }
}
