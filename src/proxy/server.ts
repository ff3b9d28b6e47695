/**
 * The host proxy (spec ADR-005 "host gateway"): the same `/v1` API as the world agent —
 * built by the same `buildRouter` — on `~/.substrate/sock/agent.sock` (directory 0700,
 * socket 0600) and optionally on TCP loopback with a bearer token. Middleware in front of
 * every route: authentication, per-agent rate limit and budget (in ForwardingService), an
 * audit log (JSONL) and W3C `traceparent` propagation to the agent.
 *
 * Authentication on the Unix socket is the kernel's word, not the client's: SO_PEERCRED of
 * each accepted connection must carry our own uid (peercred.ts). File modes already keep
 * other users out; the check still holds if someone loosens them (tested). TCP callers must
 * send `Authorization: Bearer <token>` (compared in constant time) and may only come from
 * loopback: we refuse to bind anything else.
 */
import { chmodSync, closeSync, lstatSync, mkdirSync, openSync, statSync, unlinkSync, writeSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage } from "node:http";
import { createServer, isIP, type Server, type Socket } from "node:net";
import { dirname, join } from "node:path";
import { timingSafeEqual, randomBytes } from "node:crypto";
import { getRequestListener } from "@hono/node-server";
import type { MiddlewareHandler } from "hono";
import { errorBody, httpStatusFor, type AuditLine } from "../contract/index.ts";
import { answerClientError, buildRouter } from "../api/router.ts";
import { enforceHeaderDeadline } from "../api/deadline.ts";
import { substrateHome } from "../config.ts";
import { ForwardingService, requestContext, type ProxyPolicy, type RequestContext } from "./forward.ts";
import { peerCred, type PeerCred } from "./peercred.ts";
import { socketAnswers } from "../sys/unix-socket.ts";
import type { RateLimitOptions } from "./ratelimit.ts";
import { RateLimiter } from "./ratelimit.ts";
import { streamBridge } from "./stream.ts";
import { AgentTokens, policyApprovals, type BoundAgent } from "./agents.ts";
import { approveSocketFor, outsideHostRoot, serveApprover, type RunningApprover } from "../api/approver.ts";

export const defaultProxySocket = (env: NodeJS.ProcessEnv = process.env): string => join(substrateHome(env), "sock", "agent.sock");
export const defaultAuditPath = (env: NodeJS.ProcessEnv = process.env): string => join(substrateHome(env), "audit.jsonl");

export interface ProxyOptions {
  socketPath: string;
  agentSocket: string;
  /** TCP loopback listener; `token` is required (bearer). port 0 = any free port. */
  tcp?: { host: string; port: number; token: string };
  /** JSONL audit log; null disables it. */
  auditPath?: string | null;
  tracePath?: string;
  rate?: RateLimitOptions;
  log?: (msg: string) => void;
  /** The policy gate (src/broker); null/undefined = none (tests of pure API parity). */
  policy?: ProxyPolicy | null;
  /** RELIABILITY (issue 14.6): per-agent bearer tokens binding agent_id and budget (src/proxy/agents.ts). */
  agentTokens?: AgentTokens;
}

export interface RunningProxy {
  socketPath: string;
  tcp?: { host: string; port: number };
  service: ForwardingService;
  close(): Promise<void>;
}

export class ProxyError extends Error {
  override name = "ProxyError";
  constructor(
    message: string,
    readonly exitCode: number,
    readonly hint?: string,
  ) {
    super(message);
  }
}

/**
 * The audit log: lines are batched and written with one append per event-loop turn (a
 * write(2) per request cost ~0.1 ms of proxy CPU, measured). O_APPEND keeps concurrent
 * writers' lines whole.
 */
class AuditLog {
  private fd: number;
  private buf: string[] = [];
  private scheduled = false;
  constructor(
    path: string,
    private readonly log: (msg: string) => void,
  ) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.fd = openSync(path, "a", 0o600);
  }
  write(l: AuditLine): void {
    this.buf.push(`${JSON.stringify(l)}\n`);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }
  flush(): void {
    this.scheduled = false;
    if (!this.buf.length || this.fd < 0) return;
    const data = this.buf.join("");
    this.buf = [];
    try {
      writeSync(this.fd, data);
    } catch (e) {
      this.log(`audit log: ${(e as Error).message}`);
    }
  }
  close(): void {
    this.flush();
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

interface Conn {
  kind: "unix" | "tcp";
  peer?: PeerCred;
  /** why this unix connection is refused (peer uid mismatch, unreadable credentials) */
  refused?: string;
}

/** W3C trace context: keep the caller's trace id, name ourselves as the parent; else start one. */
export function nextTraceparent(incoming: string | undefined): string {
  const m = incoming ? /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(incoming.trim()) : null;
  const parent = randomBytes(8).toString("hex");
  if (m && m[1] !== "ff" && !/^0+$/.test(m[2]!) && !/^0+$/.test(m[3]!)) return `00-${m[2]}-${parent}-${m[4]}`;
  return `00-${randomBytes(16).toString("hex")}-${parent}-01`;
}

export const isLoopback = (host: string): boolean => host === "::1" || (isIP(host) === 4 && host.startsWith("127."));


/** ~/.substrate/sock: ours, 0700 (created or tightened). */
function prepareDir(dir: string, uid: number): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if (st.uid !== uid) throw new ProxyError(`${dir} belongs to uid ${st.uid}, not to us (uid ${uid})`, 2, "remove it or choose another --socket");
  chmodSync(dir, 0o700);
}

export async function startProxy(o: ProxyOptions): Promise<RunningProxy> {
  const uid = process.getuid?.() ?? 0;
  const log = o.log ?? (() => {});
  if (o.tcp && !isLoopback(o.tcp.host))
    throw new ProxyError(`refusing to listen on ${o.tcp.host}: the TCP listener is loopback only`, 2, "use 127.0.0.1 or ::1");
  if (o.tcp && o.tcp.token.length < 16) throw new ProxyError("the TCP bearer token must be at least 16 characters", 2);

  const conns = new WeakMap<Socket, Conn>();
  const open = new Set<Socket>();
  const track = (s: Socket) => {
    open.add(s);
    s.once("close", () => open.delete(s));
  };
  const audit = o.auditPath === null ? null : new AuditLog(o.auditPath ?? defaultAuditPath(), log);
  const writeAudit = (l: AuditLine) => audit?.write(l);

  const tokenBuf = o.tcp ? Buffer.from(o.tcp.token) : null;
  const agentTokens = o.agentTokens ?? new AgentTokens();
  /** null = allowed; else [status, error body]. `bound`: the agent an agent token binds the request to (14.6). */
  const authorize = (sock: Socket | undefined, authz: string | undefined): { body: string; status: number; conn?: Conn } | { conn: Conn; bound: BoundAgent | null } => {
    const conn = sock ? conns.get(sock) : undefined;
    if (!conn) return { status: 403, body: JSON.stringify(errorBody("denied", "connection of unknown origin")) };
    const m = /^Bearer\s+(\S+)$/i.exec(authz ?? "");
    // RELIABILITY (issue 14.6): an agent token (on either listener) binds the request to its agent.
    const bound = m ? agentTokens.match(m[1]!) : null;
    if (conn.kind === "unix") {
      if (conn.refused) return { conn, status: 403, body: JSON.stringify(errorBody("denied", conn.refused, "connect as the user who runs `substrate proxy`")) };
      if (m && !bound) return { conn, status: 403, body: JSON.stringify(errorBody("denied", "unknown agent token", "send a token from the proxy's agent token file, or none")) };
      return { conn, bound };
    }
    if (bound) return { conn, bound };
    const given = m ? Buffer.from(m[1]!) : null;
    if (!given || !tokenBuf || given.length !== tokenBuf.length || !timingSafeEqual(given, tokenBuf))
      return { conn, status: 403, body: JSON.stringify(errorBody("denied", "missing or wrong bearer token", "send Authorization: Bearer <token> (see `substrate proxy --help`)")) };
    return { conn, bound: null };
  };

  const svc = new ForwardingService({ agentSocket: o.agentSocket, limiter: new RateLimiter(o.rate), tracePath: o.tracePath, log, policy: o.policy, agentTokens });

  const middleware: MiddlewareHandler = async (c, next) => {
    const t0 = performance.now();
    const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
    const a = authorize(incoming?.socket as Socket | undefined, c.req.header("authorization"));
    const ctx: RequestContext = { agentId: null, traceparent: nextTraceparent(c.req.header("traceparent")), bound: "bound" in a ? a.bound : null };
    const conn = a.conn;
    let error: string | null = null;
    if ("status" in a) {
      c.res = new Response(a.body, { status: a.status, headers: { "content-type": "application/json" } });
      error = "denied";
    } else {
      await requestContext.run(ctx, () => next());
      if (c.res.status >= 400) {
        try {
          error = ((await c.res.clone().json()) as { error?: { code?: string } }).error?.code ?? null;
        } catch {}
      }
    }
    c.res.headers.set("traceparent", ctx.traceparent);
    writeAudit({
      ts: new Date().toISOString(),
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      duration_ms: Math.round((performance.now() - t0) * 1000) / 1000,
      agent_id: ctx.agentId,
      auth: error === "denied" && "status" in a ? "denied" : conn?.kind === "tcp" ? "token" : "peercred",
      peer: conn?.peer ?? null,
      traceparent: ctx.traceparent,
      error,
    });
    return c.res;
  };

  const app = buildRouter(svc, { middleware: [middleware] });
  const http = createHttpServer(
    // overrideGlobalObjects: false — by default @hono/node-server swaps the process-wide
    // Response for its own class, after which Bun.serve rejects every Response it is given.
    getRequestListener(app.fetch, { overrideGlobalObjects: false }),
  );
  http.keepAliveTimeout = 30_000;
  http.headersTimeout = 15_000;
  http.requestTimeout = 0;
  http.on("clientError", answerClientError);
  enforceHeaderDeadline(http); // Bun does not enforce headersTimeout (see src/api/deadline.ts)

  const bridge = streamBridge({
    agentSocket: o.agentSocket,
    svc,
    traceparent: nextTraceparent,
    authorize: (req) => {
      const a = authorize(req.socket as Socket, req.headers.authorization);
      return "status" in a ? { status: a.status, body: a.body } : null;
    },
    boundOf: (req) => {
      const a = authorize(req.socket as Socket, req.headers.authorization);
      return "bound" in a ? a.bound : null;
    },
    audit: (req, status, agentId, error, tp) => {
      const conn = conns.get(req.socket as Socket);
      writeAudit({
        ts: new Date().toISOString(),
        method: "GET",
        path: (req.url ?? "").split("?")[0]!,
        status,
        duration_ms: 0,
        agent_id: agentId,
        auth: error === "denied" ? "denied" : conn?.kind === "tcp" ? "token" : "peercred",
        peer: conn?.peer ?? null,
        traceparent: tp,
        error,
      });
    },
  });
  http.on("upgrade", bridge.onUpgrade);

  const servers: Server[] = [];
  // Unix socket
  prepareDir(dirname(o.socketPath), uid);
  try {
    const st = lstatSync(o.socketPath);
    if (!st.isSocket()) throw new ProxyError(`${o.socketPath} exists and is not a socket; refusing to replace it`, 2);
    if (await socketAnswers(o.socketPath)) throw new ProxyError(`another proxy is already serving ${o.socketPath}`, 3, "stop it first, or use --socket");
    unlinkSync(o.socketPath);
  } catch (e) {
    if (e instanceof ProxyError) throw e;
  }
  const unixServer = createServer((s: Socket) => {
    const conn: Conn = { kind: "unix" };
    try {
      const p = peerCred(s);
      if (!p) conn.refused = "cannot read the peer credentials of this connection";
      else {
        conn.peer = p;
        if (p.uid !== uid) conn.refused = `peer uid ${p.uid} (pid ${p.pid}) is not the proxy's uid ${uid}`;
        // RELIABILITY (issue 18.5/14.2): worlds show the caller's home read-only, and a Unix
        // socket on a read-only mount still accepts connect(2): a command in a world must not
        // reach this API (acting as another agent, asking in its name). Same check as the approver's.
        else conn.refused = outsideHostRoot(p.pid) ?? undefined;
      }
    } catch (e) {
      conn.refused = `cannot read the peer credentials: ${(e as Error).message}`;
    }
    conns.set(s, conn);
    track(s);
    http.emit("connection", s);
  });
  await new Promise<void>((resolve, reject) => {
    unixServer.once("error", (e: NodeJS.ErrnoException) => reject(new ProxyError(`cannot listen on ${o.socketPath}: ${e.message}`, 1)));
    // Created 0600 from the start: no window in which others could connect.
    const old = process.umask(0o177);
    unixServer.listen(o.socketPath, () => resolve());
    process.umask(old);
  });
  chmodSync(o.socketPath, 0o600);
  servers.push(unixServer);

  // RELIABILITY (issue 18.5): the policy approvals are answered on an approver socket of their
  // own beside ours (0600; the peer must be on the host, not in a world), never on this API.
  let approver: RunningApprover | null = null;
  if (o.policy) {
    try {
      approver = await serveApprover({ path: approveSocketFor(o.socketPath), sources: [policyApprovals(o.policy.approvals, uid)], mode: 0o600, log });
    } catch (e) {
      for (const s of servers) s.close();
      throw new ProxyError((e as Error).message, 3, "stop the other proxy first, or use --socket");
    }
  }

  let tcpAddr: { host: string; port: number } | undefined;
  if (o.tcp) {
    const tcpServer = createServer((s: Socket) => {
      conns.set(s, { kind: "tcp" });
      track(s);
      http.emit("connection", s);
    });
    await new Promise<void>((resolve, reject) => {
      tcpServer.once("error", (e) => reject(new ProxyError(`cannot listen on ${o.tcp!.host}:${o.tcp!.port}: ${e.message}`, 1)));
      tcpServer.listen(o.tcp!.port, o.tcp!.host, () => resolve());
    });
    const addr = tcpServer.address();
    tcpAddr = { host: o.tcp.host, port: typeof addr === "object" && addr ? addr.port : o.tcp.port };
    servers.push(tcpServer);
  }

  return {
    socketPath: o.socketPath,
    tcp: tcpAddr,
    service: svc,
    close: async () => {
      bridge.close();
      const closed = Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
      for (const s of open) s.destroy();
      await closed;
      await approver?.close();
      try {
        unlinkSync(o.socketPath);
      } catch {}
      audit?.close();
    },
  };
}

export { httpStatusFor };
