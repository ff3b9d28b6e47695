/**
 * The in-world egress helper: the agent binary in its hidden `__egress` mode, running in the
 * world's network namespace (and only there: not in its PID or mount namespace, so no
 * process of the world can see, signal or ptrace it). Entry: `runEgressHelper(config)`.
 *
 * It serves, inside the world's netns:
 *   127.0.0.53:53       the DNS stub, UDP and TCP (the spec's pin; it listens on :5353, nft maps :53 to it,
 *                       so it needs no privilege): every question goes to the gateway,
 *                       which answers allowlisted names with synthetic addresses (198.18/15)
 *                       and everything else with NXDOMAIN (recorded as a denial)
 *   127.0.0.1:3128/tcp  HTTP proxy (CONNECT and absolute-URI requests) and SOCKS5 on one
 *                       port (the first byte tells them apart)
 *   127.0.0.1:15001/tcp the transparent listener the world's nft `redirect` feeds with every
 *                       other TCP connection; the original destination is SO_ORIGINAL_DST
 *
 * It decides nothing: each connection becomes one connection to the world's gateway socket
 * (gateway.ts) that carries the destination, and the gateway says yes or no. Denials are
 * rendered per protocol: HTTP 403 with a machine-readable first line, SOCKS reply 0x02, an
 * SSH disconnect text for port 22, a reset otherwise.
 *
 * Privileges: it binds its ports first, then (root agent) drops to an unprivileged uid with
 * no supplementary groups, no_new_privs and not dumpable. It exits when its control
 * connection to the gateway closes (the agent went away or the world was torn down).
 */
import dgram from "node:dgram";
import { dlopen, FFIType, ptr } from "bun:ffi";
import { decodeMessage, encodeMessage, QTYPE, RCODE, type DnsRecord } from "../world/net/dnswire.ts";
import { connHandlers, splice, Writer, type Conn, type ConnSocket } from "./splice.ts";
import { closeFd, connectSeqpacket, preloadFdpass, sendWithFd } from "./fdpass.ts";

export interface EgressHelperConfig {
  /**
   * Join this network namespace (`/proc/<pid>/ns/net`) before binding anything: a helper
   * started ahead of time in the agent's netns (root agent; world.ts keeps one warm) moves
   * into the world's here. setns(CLONE_NEWNET) acts on the calling thread, which is the one
   * that creates every socket of the helper (Bun's event loop thread).
   */
  netns?: string;
  /**
   * Root agent, first start: apply the world's netns setup from here, once inside it (no
   * nsenter round trips on the world's creation path): lo up + address + local route over
   * rtnetlink (rtnl.ts; the listeners bind on lo) and the nft table through libnftables
   * (nftlib.ts; `nft -f -` as the fallback), both before privileges are dropped.
   */
  netSetup?: { loAddr: string; nft: string };
  /** The world's gateway socket (host path; the helper lives in the host's mount namespace). */
  socket: string;
  /**
   * The gateway's socket-handoff channel (`fd.sock` next to `socket`; fdpass.ts): when set and
   * the gateway accepts it, each accepted connection is handed over (SCM_RIGHTS) and the
   * gateway splices it itself; otherwise (or when a handoff cannot be sent) this helper relays.
   */
  fdSocket?: string;
  token: string;
  /** Drop to this uid/gid once bound (root agent); absent = keep (rootless: root of the world's userns). */
  dropTo?: { uid: number; gid: number };
  dnsAddr?: string;
  proxyPort?: number;
  transparentPort?: number;
}

import { DNS_ADDR, DNS_PORT, PROXY_PORT, TRANSPARENT_PORT } from "./netns.ts";
import { setupLoopback } from "./rtnl.ts";
import { nftApplyInProcess, preloadNftables } from "./nftlib.ts";
import { applyLandlock } from "../world/landlock.ts";
/** First line of a 403 body: machine-readable (a tool or an agent parses it). */
export const DECISION_PREFIX = "SUBSTRATE_EGRESS_DECISION";

const log = (m: string) => process.stderr.write(`substrate-egress: ${m}\n`);

// ---------------------------------------------------------------------------------------------
// libc bits: SO_ORIGINAL_DST, privilege drop

let lib: ReturnType<typeof openLib> | undefined;
function openLib() {
  const { i32, u32, pointer: P, u64 } = FFIType;
  return dlopen("libc.so.6", {
    getsockopt: { args: [i32, i32, i32, P, P], returns: i32 },
    setgroups: { args: [u64, P], returns: i32 },
    setresgid: { args: [u32, u32, u32], returns: i32 },
    setresuid: { args: [u32, u32, u32], returns: i32 },
    prctl: { args: [i32, u64, u64, u64, u64], returns: i32 },
    setns: { args: [i32, i32], returns: i32 },
    open: { args: [P, i32], returns: i32 },
    close: { args: [i32], returns: i32 },
    chroot: { args: [P], returns: i32 },
    chdir: { args: [P], returns: i32 },
  }).symbols;
}
const L = () => (lib ??= openLib());

/** The destination a redirected connection was originally sent to. */
export function originalDst(fd: number): { ip: string; port: number } | null {
  const sa = new Uint8Array(16);
  const len = new Uint32Array([16]);
  if (L().getsockopt(fd, 0 /* SOL_IP */, 80 /* SO_ORIGINAL_DST */, ptr(sa), ptr(len)) !== 0) return null;
  return { ip: `${sa[4]}.${sa[5]}.${sa[6]}.${sa[7]}`, port: (sa[2]! << 8) | sa[3]! };
}

function joinNetns(path: string): void {
  const l = L();
  const fd = l.open(ptr(Buffer.from(`${path}\0`)), 0x80000 /* O_RDONLY|O_CLOEXEC */);
  if (fd < 0) throw new Error(`cannot open ${path}`);
  const rc = l.setns(fd, 0x40000000 /* CLONE_NEWNET */);
  l.close(fd);
  if (rc !== 0) throw new Error(`setns ${path} failed`);
}

function dropPrivileges(to: { uid: number; gid: number }): void {
  const l = L();
  if (l.setgroups(0, null) !== 0) throw new Error("setgroups failed");
  if (l.setresgid(to.gid, to.gid, to.gid) !== 0) throw new Error("setresgid failed");
  if (l.setresuid(to.uid, to.uid, to.uid) !== 0) throw new Error("setresuid failed");
  if (process.getuid?.() !== to.uid) throw new Error("uid did not change");
}

function hardenSelfLight(): void {
  const l = L();
  l.prctl(38 /* PR_SET_NO_NEW_PRIVS */, 1n, 0n, 0n, 0n);
  l.prctl(4 /* PR_SET_DUMPABLE */, 0n, 0n, 0n, 0n);
}

// ---------------------------------------------------------------------------------------------
// Gateway connections

interface GwAnswer {
  ok: boolean;
  reason?: string;
  message?: string;
}

/** Opens a connection through the gateway; resolves once it said yes or no. */
function gatewayConnect(cfg: EgressHelperConfig, req: Record<string, unknown>): Promise<{ answer: GwAnswer; sock?: ConnSocket; rest?: Uint8Array }> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    let done = false;
    const fail = (message: string) => {
      if (done) return;
      done = true;
      resolve({ answer: { ok: false, reason: "dial_failed", message: `egress gateway unavailable: ${message}` } });
    };
    Bun.connect<Conn>({
      allowHalfOpen: true,
      unix: cfg.socket,
      data: {},
      socket: {
        ...(connHandlers as unknown as Bun.SocketHandler<Conn>),
        open(s) {
          s.data.onData = (b) => {
            if (done) return;
            buf = Buffer.concat([buf, b]);
            const nl = buf.indexOf(10);
            if (nl === -1) {
              if (buf.length > 8192) {
                s.terminate();
                fail("bad answer");
              }
              return;
            }
            let a: GwAnswer;
            try {
              a = JSON.parse(buf.subarray(0, nl).toString("utf8")) as GwAnswer;
            } catch {
              s.terminate();
              return fail("bad answer");
            }
            done = true;
            if (!a.ok) {
              s.end();
              return resolve({ answer: a });
            }
            // The connection is ours now: splice() takes the callbacks over.
            s.data.onData = undefined;
            s.pause();
            resolve({ answer: a, sock: s as unknown as ConnSocket, rest: buf.subarray(nl + 1) });
          };
          s.data.onClose = () => fail("closed");
          s.write(`${JSON.stringify({ v: 1, token: cfg.token, kind: "connect", ...req })}\n`);
        },
        connectError(_s, e) {
          fail(e.message);
        },
      },
    }).catch((e: unknown) => fail((e as Error).message));
  });
}

// ---------------------------------------------------------------------------------------------
// Denials, per protocol

export function http403(a: GwAnswer, name: string, port: number): string {
  const decision = JSON.stringify({ decision: "deny", reason: a.reason ?? "not_allowed", host: name, port });
  const body = `${DECISION_PREFIX} ${decision}\nsubstrate: blocked egress: ${a.message ?? `${name}:${port} is not allowed`}\n`;
  return [
    "HTTP/1.1 403 Forbidden",
    `X-Substrate-Egress: denied; reason=${a.reason ?? "not_allowed"}`,
    "Content-Type: text/plain; charset=utf-8",
    `Content-Length: ${Buffer.byteLength(body)}`,
    "Connection: close",
    "",
    body,
  ].join("\r\n");
}

/** `SSH-2.0-…` banner + an unencrypted SSH_MSG_DISCONNECT whose text OpenSSH prints. */
export function sshDisconnect(text: string): Uint8Array {
  const desc = Buffer.from(text.slice(0, 400), "utf8");
  const dlen = Buffer.alloc(4);
  dlen.writeUInt32BE(desc.length, 0);
  const payload = Buffer.concat([
    Buffer.from([1]), // SSH_MSG_DISCONNECT
    Buffer.from([0, 0, 0, 2]), // SSH_DISCONNECT_PROTOCOL_ERROR
    dlen,
    desc,
    Buffer.from([0, 0, 0, 0]), // language tag ""
  ]);
  let pad = 8 - ((5 + payload.length) % 8);
  if (pad < 4) pad += 8;
  const len = 1 + payload.length + pad;
  const head = Buffer.alloc(5);
  head.writeUInt32BE(len, 0);
  head[4] = pad;
  return Buffer.concat([Buffer.from("SSH-2.0-substrate_policy\r\n"), head, payload, Buffer.alloc(pad)]);
}

// ---------------------------------------------------------------------------------------------
// Listeners

interface CConn extends Conn {
  buf?: Buffer;
  state?: "new" | "busy";
}

const clientOf = (s: ConnSocket) => ({ addr: s.remoteAddress, port: (s as unknown as { remotePort: number }).remotePort });

function startSplice(client: ConnSocket, gw: ConnSocket, rest: Uint8Array | undefined, pendingUp?: Uint8Array): void {
  client.resume();
  gw.resume();
  splice(client, gw, {}, pendingUp, rest);
}

/** Parses `host:port` / `[v6]:port`. */
function splitAuthority(a: string, dflt: number): { host: string; port: number } | null {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(a) ?? /^([^:]+)(?::(\d+))?$/.exec(a);
  if (!m) return null;
  const port = m[2] === undefined ? dflt : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return null;
  return { host: m[1]!, port };
}

const CONNECT_OK = Buffer.from("HTTP/1.1 200 Connection established\r\n\r\n");
const SOCKS_OK = Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);

async function onProxyHttp(cfg: EgressHelperConfig, ctl: Control, s: ConnSocket, head: Buffer, after: Buffer): Promise<void> {
  const text = head.toString("latin1");
  const lines = text.split("\r\n");
  const [method, target, version] = (lines[0] ?? "").split(" ");
  const bad = (code: number, msg: string) => s.end(`HTTP/1.1 ${code} ${msg}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
  if (!method || !target || !version?.startsWith("HTTP/")) return void bad(400, "Bad Request");
  if (method === "CONNECT") {
    const a = splitAuthority(target, 443);
    if (!a) return void bad(400, "Bad Request");
    const h = await handOver(ctl, s, { via: "proxy", name: a.host, port: a.port }, after, CONNECT_OK);
    if (h) return void (h.ok || s.end(http403(h, a.host, a.port)));
    const r = await gatewayConnect(cfg, { via: "proxy", name: a.host, port: a.port, client: clientOf(s) });
    if (!r.answer.ok || !r.sock) return void s.end(http403(r.answer, a.host, a.port));
    s.write("HTTP/1.1 200 Connection established\r\n\r\n");
    return startSplice(s, r.sock, r.rest, after.length ? after : undefined);
  }
  // Absolute-URI request (plain HTTP through the proxy): one request per connection.
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    return void bad(400, "Bad Request");
  }
  if (url.protocol !== "http:") return void bad(400, "Bad Request");
  const port = url.port ? Number(url.port) : 80;
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const kept = lines.slice(1).filter((l) => l !== "" && !/^(proxy-connection|proxy-authorization|connection|keep-alive):/i.test(l));
  const req = `${method} ${url.pathname}${url.search} ${version}\r\n${[...kept, "Connection: close"].join("\r\n")}\r\n\r\n`;
  const first = Buffer.concat([Buffer.from(req, "latin1"), after]);
  const h = await handOver(ctl, s, { via: "proxy", name: host, port }, first);
  if (h) return void (h.ok || s.end(http403(h, host, port)));
  const r = await gatewayConnect(cfg, { via: "proxy", name: host, port, client: clientOf(s) });
  if (!r.answer.ok || !r.sock) return void s.end(http403(r.answer, host, port));
  startSplice(s, r.sock, r.rest, first);
}

async function onSocks(cfg: EgressHelperConfig, ctl: Control, s: ConnSocket, b: Buffer): Promise<boolean> {
  // Greeting: 05 n methods…  → 05 00 (no authentication)
  const d = s.data as CConn;
  if (d.state !== "busy") {
    if (b.length < 2 || b.length < 2 + b[1]!) return false;
    const rest = b.subarray(2 + b[1]!);
    s.write(Buffer.from([5, 0]));
    d.state = "busy";
    d.buf = Buffer.from(rest);
    if (rest.length === 0) return true;
    b = d.buf;
  }
  // Request: 05 01 00 atyp addr port
  if (b.length < 5) return false;
  const atyp = b[3]!;
  let host: string;
  let off: number;
  if (atyp === 1) {
    if (b.length < 10) return false;
    host = `${b[4]}.${b[5]}.${b[6]}.${b[7]}`;
    off = 8;
  } else if (atyp === 3) {
    const n = b[4]!;
    if (b.length < 5 + n + 2) return false;
    host = b.subarray(5, 5 + n).toString("latin1");
    off = 5 + n;
  } else if (atyp === 4) {
    if (b.length < 22) return false;
    host = "::";
    off = 20;
  } else {
    s.end(Buffer.from([5, 8, 0, 1, 0, 0, 0, 0, 0, 0]));
    return true;
  }
  const port = b.readUInt16BE(off);
  const after = b.subarray(off + 2);
  d.buf = undefined;
  if (b[1] !== 1) {
    s.end(Buffer.from([5, 7, 0, 1, 0, 0, 0, 0, 0, 0])); // command not supported
    return true;
  }
  s.data.onData = (x) => (d.buf = Buffer.concat([d.buf ?? Buffer.alloc(0), x]));
  s.pause();
  const h = await handOver(ctl, s, { via: "socks", name: host, port }, Buffer.concat([after, d.buf ?? Buffer.alloc(0)]), SOCKS_OK);
  if (h) {
    if (!h.ok) s.end(Buffer.from([5, 2, 0, 1, 0, 0, 0, 0, 0, 0]));
    return true;
  }
  s.resume();
  const r = await gatewayConnect(cfg, { via: "socks", name: host, port, client: clientOf(s) });
  if (!r.answer.ok || !r.sock) {
    s.end(Buffer.from([5, 2, 0, 1, 0, 0, 0, 0, 0, 0])); // connection not allowed by ruleset
    return true;
  }
  s.write(Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
  const more = Buffer.concat([after, d.buf ?? Buffer.alloc(0)]);
  startSplice(s, r.sock, r.rest, more.length ? more : undefined);
  return true;
}

function listenProxy(cfg: EgressHelperConfig, ctl: Control): void {
  Bun.listen<CConn>({
    allowHalfOpen: true,
    hostname: "127.0.0.1",
    port: cfg.proxyPort ?? PROXY_PORT,
    data: {},
    socket: {
      ...(connHandlers as unknown as Bun.SocketHandler<CConn>),
      open(s) {
        s.data = { state: "new" };
        const cs = s as unknown as ConnSocket;
        s.data.onData = (b) => {
          const d = s.data;
          d.buf = d.buf ? Buffer.concat([d.buf, b]) : Buffer.from(b);
          if (d.buf.length > 65536) return void s.terminate();
          if (d.buf[0] === 5) {
            void onSocks(cfg, ctl, cs, d.buf).catch(() => s.terminate());
            return;
          }
          const end = d.buf.indexOf("\r\n\r\n");
          if (end === -1) return;
          const head = d.buf.subarray(0, end);
          const after = d.buf.subarray(end + 4);
          d.buf = undefined;
          const parked: Buffer[] = [];
          s.data.onData = (x) => void parked.push(Buffer.from(x));
          s.pause();
          void onProxyHttp(cfg, ctl, cs, head, Buffer.concat([after, ...parked])).catch(() => s.terminate());
        };
      },
    },
  });
}

function listenTransparent(cfg: EgressHelperConfig, ctl: Control): void {
  Bun.listen<CConn>({
    allowHalfOpen: true,
    hostname: "127.0.0.1",
    port: cfg.transparentPort ?? TRANSPARENT_PORT,
    data: {},
    socket: {
      ...(connHandlers as unknown as Bun.SocketHandler<CConn>),
      open(s) {
        s.data = {};
        const cs = s as unknown as ConnSocket;
        const parked: Buffer[] = [];
        s.data.onData = (x) => void parked.push(Buffer.from(x));
        const dst = originalDst((s as unknown as { fd: number }).fd);
        if (!dst) return void s.terminate();
        const deny = (a: GwAnswer) => {
          const msg = a.message ?? "not allowed";
          if (dst.port === 22) s.end(sshDisconnect(`substrate: ${msg}`));
          else if (dst.port === 80) s.end(http403(a, msg.split(/[: ]/)[0] ?? dst.ip, dst.port));
          else s.terminate(); // reset: fails at once
        };
        // Nothing is read before the handoff: the client's bytes stay in the kernel for the gateway.
        s.pause();
        void handOver(ctl, cs, { via: "transparent", ip: dst.ip, port: dst.port }).then((h) => {
          if (h) return void (h.ok || deny(h));
          s.resume();
          void gatewayConnect(cfg, { via: "transparent", ip: dst.ip, port: dst.port, client: clientOf(cs) }).then((r) => {
            if (r.answer.ok && r.sock) return startSplice(cs, r.sock, r.rest, parked.length ? Buffer.concat(parked) : undefined);
            deny(r.answer);
          });
        });
      },
    },
  });
}

// ---------------------------------------------------------------------------------------------
// DNS stub

class Control {
  private sock?: ConnSocket;
  private next = 1;
  private waiting = new Map<number, (a: Record<string, unknown>) => void>();
  private buf = "";
  private w?: Writer;
  /** The handoff channel, once the gateway accepted it. */
  chan?: number;

  constructor(private readonly cfg: EgressHelperConfig) {}

  async open(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      Bun.connect<Conn>({
        allowHalfOpen: true,
        unix: this.cfg.socket,
        data: {},
        socket: {
          ...(connHandlers as unknown as Bun.SocketHandler<Conn>),
          open: (s) => {
            this.sock = s as unknown as ConnSocket;
            this.w = new Writer(this.sock);
            s.data.onDrain = () => void this.w?.flush();
            s.data.onData = (b) => this.onData(b);
            // The gateway is gone (agent stopped, world torn down): so is this helper.
            s.data.onClose = () => process.exit(0);
            s.write(`${JSON.stringify({ v: 1, token: this.cfg.token, kind: "control" })}\n`);
            resolve();
          },
          connectError: (_s, e) => reject(e),
        },
      }).catch(reject);
    });
  }

  private onData(b: Uint8Array): void {
    this.buf += Buffer.from(b).toString("utf8");
    let nl: number;
    while ((nl = this.buf.indexOf("\n")) !== -1) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      try {
        const a = JSON.parse(line) as Record<string, unknown>;
        const w = this.waiting.get(a.id as number);
        if (w) {
          this.waiting.delete(a.id as number);
          w(a);
        }
      } catch {}
    }
  }

  newId(): number {
    return this.next++;
  }

  ask(req: Record<string, unknown>, timeoutMs = 4000, id = this.next++, onTimeout: Record<string, unknown> = { rcode: RCODE.SERVFAIL }): Promise<Record<string, unknown>> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiting.delete(id);
        resolve(onTimeout);
      }, timeoutMs);
      this.waiting.set(id, (a) => {
        clearTimeout(t);
        resolve(a);
      });
      this.w?.write(Buffer.from(`${JSON.stringify({ id, ...req })}\n`));
    });
  }

  /** Connect to the gateway's handoff channel and present the token; false = relay everything. */
  async openChannel(path: string): Promise<boolean> {
    let fd: number;
    try {
      fd = connectSeqpacket(path);
    } catch (e) {
      log(`no socket handoff: ${(e as Error).message}`);
      return false;
    }
    if (sendWithFd(fd, Buffer.from(this.cfg.token)) !== 0) {
      closeFd(fd);
      return false;
    }
    const a = await this.ask({ op: "fdchan" }, 10_000, undefined, { ok: false });
    if (a.ok !== true) {
      log(`no socket handoff: ${String(a.message ?? "refused")}`);
      closeFd(fd);
      return false;
    }
    this.chan = fd;
    return true;
  }
}

/**
 * Hand a world's accepted connection to the gateway (one relay instead of two): the socket
 * goes over the channel with the bytes already read from it (`up`) and what the client must
 * see first once the gateway has dialed (`down`: the CONNECT 200, the SOCKS success reply),
 * then the request line on the control connection. The gateway decides by name+port again
 * and answers. On yes, the socket is the gateway's: this copy is closed (a plain close; no
 * shutdown, no reset, so the connection lives on). On no, this copy renders the denial.
 * null = not handed over (no channel, or the channel is full): the caller relays.
 */
async function handOver(ctl: Control, s: ConnSocket, req: Record<string, unknown>, up?: Uint8Array, down?: Uint8Array): Promise<GwAnswer | null> {
  const fd = (s as unknown as { fd?: number }).fd;
  if (ctl.chan === undefined || typeof fd !== "number" || fd < 0 || s.data.closed) return null;
  const id = ctl.newId();
  const meta = Buffer.from(`${JSON.stringify({ id, ...(down?.length ? { down: Buffer.from(down).toString("base64") } : {}) })}\n`);
  if (sendWithFd(ctl.chan, up?.length ? Buffer.concat([meta, up]) : meta, fd) !== 0) return null;
  const a = (await ctl.ask({ op: "connect", ...req }, 60_000, id, { ok: false, reason: "dial_failed", message: "the egress gateway did not answer" })) as unknown as GwAnswer;
  if (a.ok) (s as unknown as { close(): void }).close();
  return a;
}

async function answerDns(ctl: Control, msg: Buffer): Promise<Buffer | null> {
  let q;
  try {
    q = decodeMessage(msg);
  } catch {
    return null;
  }
  if (q.response) return null;
  const question = q.questions[0];
  if (!question) return encodeMessage({ id: q.id, response: true, rcode: RCODE.FORMERR, questions: [], answers: [] });
  const answers: DnsRecord[] = [];
  let rcode: number = RCODE.NOERROR;
  if (question.type === QTYPE.PTR) {
    const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\.in-addr\.arpa$/.exec(question.name);
    const a = m ? await ctl.ask({ op: "ptr", ip: `${m[4]}.${m[3]}.${m[2]}.${m[1]}` }) : { rcode: RCODE.NXDOMAIN };
    rcode = Number(a.rcode ?? RCODE.SERVFAIL);
    if (typeof a.name === "string") answers.push({ name: question.name, type: QTYPE.PTR, ttl: 5, data: a.name });
  } else {
    const a = await ctl.ask({ op: "dns", name: question.name, qtype: question.type });
    rcode = Number(a.rcode ?? RCODE.SERVFAIL);
    if (typeof a.a === "string") answers.push({ name: question.name, type: QTYPE.A, ttl: Number(a.ttl ?? 5), data: a.a });
  }
  return encodeMessage({ id: q.id, response: true, rcode, questions: [question], answers });
}

function listenDns(cfg: EgressHelperConfig, ctl: Control): Promise<void> {
  const sock = dgram.createSocket("udp4");
  sock.on("message", (msg, rinfo) => {
    void answerDns(ctl, msg).then((r) => {
      if (r) sock.send(r, rinfo.port, rinfo.address);
    });
  });
  // DNS over TCP too (resolvers retry truncated answers there; `dig +tcp`, `use-vc`):
  // 2-byte length-prefixed messages, answered in order.
  Bun.listen<CConn>({
    hostname: cfg.dnsAddr ?? DNS_ADDR,
    port: DNS_PORT,
    data: {},
    socket: {
      ...(connHandlers as unknown as Bun.SocketHandler<CConn>),
      open(s) {
        s.data = {};
        let chain: Promise<unknown> = Promise.resolve();
        s.data.onData = (b) => {
          const d = s.data;
          d.buf = d.buf ? Buffer.concat([d.buf, b]) : Buffer.from(b);
          if (d.buf.length > 65536 + 2) return void s.terminate();
          while (d.buf.length >= 2 && d.buf.length >= 2 + d.buf.readUInt16BE(0)) {
            const msg = d.buf.subarray(2, 2 + d.buf.readUInt16BE(0));
            d.buf = d.buf.subarray(2 + msg.length);
            const q = Buffer.from(msg);
            chain = chain.then(() => answerDns(ctl, q)).then((r) => {
              if (!r || s.data.closed) return;
              const len = Buffer.alloc(2);
              len.writeUInt16BE(r.length, 0);
              s.write(Buffer.concat([len, r]));
            });
          }
        };
      },
    },
  });
  return new Promise((resolve, reject) => {
    sock.once("error", reject);
    sock.bind(DNS_PORT, cfg.dnsAddr ?? DNS_ADDR, () => resolve());
  });
}

/** The `__egress` entry: config JSON on stdin; prints `ready` once every listener is up. */
const T0 = performance.now();
const mark = process.env.SUBSTRATE_EGRESS_TIMING === "1" ? (m: string) => process.stderr.write(`timing ${m} ${(performance.now() - T0).toFixed(2)}\n`) : () => {};

export async function runEgressHelper(cfg: EgressHelperConfig): Promise<void> {
  mark("config");
  if (cfg.netns) joinNetns(cfg.netns);
  let nft: Promise<string | null> = Promise.resolve(null);
  if (cfg.netSetup) {
    // Children inherit this thread's network namespace (measured): no nsenter needed.
    // libnftables in this process (~1 ms); `nft -f -` when the library cannot be loaded.
    let inProcess: string | null | undefined;
    try {
      inProcess = nftApplyInProcess(cfg.netSetup.nft);
    } catch {
      inProcess = undefined;
    }
    if (inProcess !== undefined) nft = Promise.resolve(inProcess === null ? null : `nft: ${inProcess}`);
    else {
      const p = Bun.spawn(["nft", "-f", "-"], { stdin: new TextEncoder().encode(cfg.netSetup.nft), stdout: "ignore", stderr: "pipe" });
      nft = Promise.all([p.exited, new Response(p.stderr).text()]).then(([code, err]) => (code === 0 ? null : `nft -f: ${err.trim()}`));
    }
    try {
      setupLoopback(cfg.netSetup.loAddr); // rtnetlink from this thread: the `ip` batch without a process
    } catch (e) {
      await nft.catch(() => {});
      throw e;
    }
  }
  mark("netsetup");
  const ctl = new Control(cfg);
  await listenDns(cfg, ctl);
  listenProxy(cfg, ctl);
  listenTransparent(cfg, ctl);
  mark("listening");
  const nftErr = await nft;
  if (nftErr) throw new Error(nftErr);
  // LEAD (issue 14.1): no process a world can reach may have the host's root as its root. The
  // helper is reachable (its DNS/proxy ports), so before dropping privileges it chroots into the
  // world's gateway socket dir — all it needs from the filesystem — and dials the socket there.
  // chroot acts on the whole process (threads share it), unlike a mount-namespace switch.
  if (cfg.dropTo) {
    const dir = cfg.socket.slice(0, cfg.socket.lastIndexOf("/")) || "/";
    const l = L();
    if (l.chroot(ptr(Buffer.from(`${dir}\0`))) !== 0 || l.chdir(ptr(Buffer.from("/\0"))) !== 0) throw new Error(`chroot ${dir} failed`);
    cfg.socket = `/${cfg.socket.slice(cfg.socket.lastIndexOf("/") + 1)}`;
    if (cfg.fdSocket) cfg.fdSocket = `/${cfg.fdSocket.slice(cfg.fdSocket.lastIndexOf("/") + 1)}`;
  }
  if (cfg.dropTo) dropPrivileges(cfg.dropTo);
  hardenSelfLight();
  // No file access from here on (its JS thread, where every socket and request is handled;
  // Landlock binds a thread and its children): a hijacked helper reads nothing of the host.
  // Connecting to the gateway's path socket is not a Landlock file right.
  if (cfg.dropTo) {
    try {
      applyLandlock({ rw: [], ro: [], rx: [] });
    } catch (e) {
      log(`landlock: ${(e as Error).message} (continuing without it)`);
    }
  }
  mark("dropped");
  await ctl.open();
  if (cfg.fdSocket) await ctl.openChannel(cfg.fdSocket);
  mark("control");
  process.on("SIGTERM", () => process.exit(0));
  process.stdout.write("ready\n");
}

/** main.ts calls this for `__egress`: reads the config from stdin. */
export async function egressHelperMain(): Promise<number> {
  L(); // load libc's (and libnftables') symbols while the agent keeps this helper warm, not on a world's creation path
  preloadNftables();
  preloadFdpass();
  const text = await new Response(Bun.stdin.stream()).text();
  try {
    await runEgressHelper(JSON.parse(text) as EgressHelperConfig);
  } catch (e) {
    log((e as Error).message);
    return 1;
  }
  return await new Promise<number>(() => {});
}
