/**
 * The egress gateway: the only way out of a world. It runs inside the agent (host network
 * namespace), one listening Unix socket per world, in a 0700 directory that only the world's
 * helper may enter. Whatever arrives on a world's socket is decided against THAT world's
 * policy: the socket is the identity, a header's claims are never trusted (the token only
 * proves the peer was handed the socket by us).
 *
 * Wire protocol (one JSON line, then raw bytes):
 *   control   {"v":1,"token":T,"kind":"control"}  then request/answer lines:
 *             {"id":N,"op":"dns","name":"x","qtype":1} → {"id":N,"rcode":0,"a":"198.18.0.7","ttl":5}
 *             {"id":N,"op":"ptr","ip":"198.18.0.7"}    → {"id":N,"rcode":0,"name":"x"}
 *             The helper holds one for its whole life; the gateway closing it ends the helper.
 *   connect   {"v":1,"token":T,"kind":"connect","via":"proxy|socks|transparent",
 *              "name":"x"|"ip":"a.b.c.d","port":P,"client":{"addr":A,"port":N}}
 *             → {"ok":true}  then the bytes of the connection, both ways
 *             → {"ok":false,"reason":R,"message":M}  then close
 *
 * A connection: name (from the proxy request, or the synthetic address → name table) →
 * net.allowed decision (rules.ts, deny wins) → resolve on the host → drop every address in a
 * refused class (addr.ts; private ones only when an address rule covers them) → dial exactly
 * a surviving address → splice with back-pressure, counting bytes each way → one event.
 * No TLS is terminated: the bytes are the client's.
 *
 * Synthetic addresses (198.18.0.0/15) are name tokens: allocated in order, never reused or
 * expired while the world lives (a client caching an answer for an hour still reaches the
 * same name), and the real address is resolved again at every connect.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { promises as dnsp } from "node:dns";
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { EgressBlocked, EgressEvent, EgressReason, EgressSpec, EgressSummary } from "../../src/contract/net.ts";
import { intToIp, ipToInt, isIpv4 } from "../world/net/ipv4.ts";
import { queryA } from "../world/net/resolver.ts";
import { RCODE } from "../world/net/dnswire.ts";
import { addressAllowedByRule, addressDeniedByRule, canonicalName, decide, nameAllowed, parseRules, type EgressRule } from "./rules.ts";
import { classify } from "./addr.ts";
import { connHandlers, splice, type Conn, type ConnSocket } from "./splice.ts";
import { acceptNonBlocking, checkPassedSocket, closeFd, listenSeqpacket, netnsOfPid, originalDstOf, preloadFdpass, recvWithFds } from "./fdpass.ts";
import { PROXY_PORT, TRANSPARENT_PORT } from "./netns.ts";
import { closeRaw, dupFd, kernelRelay, writeRaw, type KernelConn } from "./kernel-relay.ts";

export const SYNTHETIC_CIDR = "198.18.0.0/15";
const SYN_FIRST = ipToInt("198.18.0.2");
const SYN_LAST = ipToInt("198.19.255.254");
/** TTL of a synthetic answer: a hint only, the mapping lives as long as the world. */
export const SYNTHETIC_TTL = 5;
const HEADER_MAX = 4096;
const QTYPE_A = 1;
const QTYPE_PTR = 12;

export const isSynthetic = (ip: string): boolean => isIpv4(ip) && ipToInt(ip) >= ipToInt("198.18.0.0") && ipToInt(ip) <= ipToInt("198.19.255.255");

export interface EgressPolicy {
  allowed: readonly string[];
  egress?: EgressSpec;
}

export interface Upstream {
  host: string;
  port: number;
}

/** The resolver the gateway uses: SUBSTRATE_WORLD_DNS_UPSTREAM when set, else the host's own (getaddrinfo). */
export function upstreamFromEnv(raw = process.env.SUBSTRATE_WORLD_DNS_UPSTREAM): Upstream | undefined {
  if (!raw) return undefined;
  const [host, port] = raw.split(":");
  const p = port === undefined ? 53 : Number(port);
  if (!host || !isIpv4(host) || !Number.isInteger(p) || p < 1 || p > 65535) {
    throw new Error(`SUBSTRATE_WORLD_DNS_UPSTREAM=${JSON.stringify(raw)} must be an IPv4 address, optionally with :port`);
  }
  return { host, port: p };
}

type Resolved = { addrs: string[]; ttl: number } | { error: "nxdomain" | "servfail"; detail: string };

async function resolveOnHost(name: string, upstream: Upstream | undefined): Promise<Resolved> {
  if (upstream) {
    try {
      const r = await queryA(name, upstream, 1500);
      if (r.rcode === RCODE.NXDOMAIN || (r.rcode === RCODE.NOERROR && r.ips.length === 0)) return { error: "nxdomain", detail: `${name} does not resolve` };
      if (r.rcode !== RCODE.NOERROR) return { error: "servfail", detail: `resolver answered rcode ${r.rcode} for ${name}` };
      return { addrs: r.ips, ttl: r.ttl };
    } catch (e) {
      return { error: "servfail", detail: (e as Error).message };
    }
  }
  try {
    const all = await dnsp.lookup(name, { all: true, verbatim: false });
    return { addrs: all.map((a) => a.address), ttl: 5 };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === "ENOTFOUND" || code === "ENODATA" ? { error: "nxdomain", detail: `${name} does not resolve` } : { error: "servfail", detail: `cannot resolve ${name}: ${code}` };
  }
}

// ---------------------------------------------------------------------------------------------
// Commands: attribution, budgets, the per-command summary

export class CommandEgress {
  bytesUp = 0;
  bytesDown = 0;
  connections = 0;
  readonly blocked = new Map<string, EgressBlocked>();
  /** In-world pid of the command (the spawner's STARTED frame). */
  pid?: number;
  private readonly t0 = performance.now();
  private rateLimited = false;
  ended = false;

  /** Trace context of the command (its execute span's session and agent). */
  sessionId?: string;
  agentId?: string;

  constructor(
    readonly spanId: string | undefined,
    readonly budget: EgressSpec | undefined,
    private readonly onRateLimit: (c: CommandEgress, why: string) => void,
  ) {}

  get total(): number {
    return this.bytesUp + this.bytesDown;
  }

  spent(): boolean {
    return this.budget?.total_bytes !== undefined && this.total >= this.budget.total_bytes;
  }

  /** Count bytes; "close" once total_bytes is exceeded, else ms to pace (bytes_per_sec). */
  count(dir: "up" | "down", n: number): number | "close" {
    if (dir === "up") this.bytesUp += n;
    else this.bytesDown += n;
    const b = this.budget;
    if (b?.total_bytes !== undefined && this.total > b.total_bytes) {
      if (!this.rateLimited) {
        this.rateLimited = true;
        this.onRateLimit(this, `egress_budget.total_bytes (${b.total_bytes}) spent: ${this.total} bytes`);
      }
      return "close";
    }
    if (b?.bytes_per_sec) {
      // One second of burst, then the average rate: hold the source until we are back under it.
      const allowed = b.bytes_per_sec * ((performance.now() - this.t0) / 1000 + 1);
      if (this.total > allowed) return Math.ceil(((this.total - allowed) / b.bytes_per_sec) * 1000);
    }
    return 0;
  }

  /** Connections in the kernel relay (kernel-relay.ts): their bytes so far, until they end. */
  readonly kernelLive = new Set<KernelConn>();

  /** Budgeted commands are relayed where every chunk is seen (splice.ts), never in the kernel. */
  get budgeted(): boolean {
    return this.budget?.total_bytes !== undefined || this.budget?.bytes_per_sec !== undefined;
  }

  summary(): EgressSummary {
    let up = this.bytesUp;
    let down = this.bytesDown;
    for (const k of this.kernelLive) {
      const l = k.live();
      up += l.up;
      down += l.down;
    }
    return { bytes_up: up, bytes_down: down, connections: this.connections, blocked: [...this.blocked.values()].slice(0, 20) };
  }
}

// ---------------------------------------------------------------------------------------------
// Attribution: which process (and command) owns a client socket in the world

const hex4 = (ip: string): string => {
  const n = ipToInt(ip);
  // /proc/net/tcp prints the address as the host-order u32 (little-endian here).
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24].map((x) => x.toString(16).padStart(2, "0")).join("").toUpperCase();
};

function socketInode(netnsPid: number, addr: string, port: number): string | null {
  if (!isIpv4(addr)) return null;
  const want4 = `${hex4(addr)}:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const want6 = `0000000000000000FFFF0000${hex4(addr)}:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  for (const [f, want] of [["tcp", want4], ["tcp6", want6]] as const) {
    let text = "";
    try {
      text = readFileSync(`/proc/${netnsPid}/net/${f}`, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const c = line.trim().split(/\s+/);
      if (c[1] === want && c[9] && c[9] !== "0") return c[9];
    }
  }
  return null;
}

function descendants(root: number, max = 4096): number[] {
  const out: number[] = [];
  const todo = [root];
  while (todo.length > 0 && out.length < max) {
    const p = todo.pop()!;
    out.push(p);
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const t of tasks) {
      try {
        for (const c of readFileSync(`/proc/${p}/task/${t}/children`, "utf8").trim().split(/\s+/)) if (c) todo.push(Number(c));
      } catch {}
    }
  }
  return out;
}

function statusField(pid: number, field: string): string | undefined {
  try {
    return new RegExp(`^${field}:\\s*(.*)$`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
  } catch {
    return undefined;
  }
}

/** Host pid of the process holding the client socket, or undefined. */
export function findSocketOwner(netnsPid: number, addr: string, port: number): number | undefined {
  const inode = socketInode(netnsPid, addr, port);
  if (!inode) return undefined;
  const target = `socket:[${inode}]`;
  for (const pid of descendants(netnsPid)) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === target) return pid;
      } catch {}
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// One world's gateway

export interface WorldGatewayOptions {
  worldId: string;
  /** Directory for the socket (created 0700, owned by `owner`). */
  dir: string;
  /** uid/gid the helper runs as: the only one (besides root) that may enter `dir`. */
  owner?: { uid: number; gid: number };
  policy: EgressPolicy;
  /** Host PID in the world's network (and PID) namespace: attribution reads /proc through it. */
  netnsPid?: number;
  upstream?: Upstream;
  onEvent?: (e: EgressEvent, cmd: CommandEgress | undefined) => void;
  onRateLimit?: (cmd: CommandEgress, why: string) => void;
  log?: (m: string) => void;
  /** false: no socket handoff, the helper relays every connection (bench/egress.ts's "before"). */
  handoff?: boolean;
  /** false: handed-over connections are relayed by splice.ts, never by the kernel relay (kernel-relay.ts). */
  kernelRelay?: boolean;
}

interface GwConn extends Conn {
  buf: Uint8Array[];
  size: number;
  phase: "header" | "control" | "deciding" | "spliced" | "closing";
  ctlBuf?: string;
  /** Control connections: the helper's handoff channel (fdpass.ts), owned by this connection. */
  chan?: number;
}

export class WorldGateway {
  readonly token = randomBytes(24).toString("hex");
  readonly socketPath: string;
  private listener?: ReturnType<typeof Bun.listen<GwConn>>;
  private rules: EgressRule[];
  private policy: EgressPolicy;
  private nextSyn = SYN_FIRST;
  private readonly nameToIp = new Map<string, string>();
  private readonly ipToName = new Map<string, string>();
  private readonly commands = new Set<CommandEgress>();
  private readonly controls = new Set<ConnSocket>();
  private readonly live = new Set<ConnSocket>();
  private resolveCache = new Map<string, { at: number; r: Resolved }>();
  /** `handoffs`: connections whose client socket the helper handed over (spliced here directly); `kernel`: of those, relayed by the kernel (kernel-relay.ts). */
  readonly totals = { bytes_up: 0, bytes_down: 0, connections: 0, denials: 0, handoffs: 0, kernel: 0 };
  private readonly lastDeny = new Map<string, number>();
  private closed = false;
  /** The handoff listener (`<dir>/fd.sock`, SOCK_SEQPACKET; fdpass.ts) and the world's netns identity. */
  private fdListen?: number;
  readonly fdSocketPath: string;
  private readonly kernelConns = new Set<KernelConn>();
  private netns: { dev: number; ino: number } | null = null;

  constructor(private readonly o: WorldGatewayOptions) {
    this.socketPath = join(o.dir, "gw.sock");
    this.fdSocketPath = join(o.dir, "fd.sock");
    this.policy = o.policy;
    this.rules = parseRules(o.policy.allowed);
  }

  /** Replace the policy: the next connection and the next DNS answer follow it. */
  setPolicy(p: EgressPolicy): void {
    this.rules = parseRules(p.allowed);
    this.policy = p;
  }

  get policyId(): string | undefined {
    return this.policy.egress?.policy_id;
  }

  async listen(): Promise<void> {
    mkdirSync(this.o.dir, { recursive: true, mode: 0o700 });
    chmodSync(this.o.dir, 0o700);
    if (this.o.owner) chownSync(this.o.dir, this.o.owner.uid, this.o.owner.gid);
    rmSync(this.socketPath, { force: true });
    const self = this;
    this.listener = Bun.listen<GwConn>({
      allowHalfOpen: true,
      unix: this.socketPath,
      socket: {
        ...(connHandlers as unknown as Bun.SocketHandler<GwConn>),
        open(s) {
          s.data = { buf: [], size: 0, phase: "header" };
          self.live.add(s as unknown as ConnSocket);
          s.data.onData = (b) => self.onHeaderData(s as unknown as ConnSocket & { data: GwConn }, b);
          const prev = s.data.onClose;
          s.data.onClose = () => {
            prev?.();
            self.live.delete(s as unknown as ConnSocket);
            self.controls.delete(s as unknown as ConnSocket);
            if (s.data.chan !== undefined) {
              closeFd(s.data.chan);
              s.data.chan = undefined;
            }
          };
        },
      },
    });
    if (this.o.owner) chownSync(this.socketPath, this.o.owner.uid, this.o.owner.gid);
    // Socket handoff: only with the world's netns known (a passed socket must be one of its own).
    if (this.o.netnsPid !== undefined && this.o.handoff !== false) {
      this.netns = netnsOfPid(this.o.netnsPid);
      if (this.netns) {
        try {
          preloadFdpass();
          rmSync(this.fdSocketPath, { force: true });
          this.fdListen = listenSeqpacket(this.fdSocketPath);
          if (this.o.owner) chownSync(this.fdSocketPath, this.o.owner.uid, this.o.owner.gid);
        } catch (e) {
          this.o.log?.(`gateway: no socket handoff (${(e as Error).message}); relaying`);
          if (this.fdListen !== undefined) closeFd(this.fdListen);
          this.fdListen = undefined;
        }
      }
    }
  }

  /** Whether the helper may hand sockets over (else it relays every connection itself). */
  get handoffAvailable(): boolean {
    return this.fdListen !== undefined;
  }

  /** A command starts in the world: its connections are counted (and budgeted) apart. */
  command(spanId: string | undefined): CommandEgress {
    const c = new CommandEgress(spanId, this.policy.egress, (cmd, why) => this.o.onRateLimit?.(cmd, why));
    this.commands.add(c);
    return c;
  }

  endCommand(c: CommandEgress): EgressSummary {
    c.ended = true;
    this.commands.delete(c);
    return c.summary();
  }

  /** Synthetic address → name, for PTR and tests. */
  nameOf(ip: string): string | undefined {
    return this.ipToName.get(ip);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listener?.stop(true);
    if (this.fdListen !== undefined) closeFd(this.fdListen);
    this.fdListen = undefined;
    for (const k of this.kernelConns) k.kill();
    for (const s of [...this.live]) {
      try {
        s.terminate();
      } catch {}
    }
    rmSync(this.o.dir, { recursive: true, force: true });
  }

  // -------------------------------------------------------------------------------------------

  private checkToken(t: unknown): boolean {
    if (typeof t !== "string" || t.length !== this.token.length) return false;
    return timingSafeEqual(Buffer.from(t), Buffer.from(this.token));
  }

  private onHeaderData(s: ConnSocket & { data: GwConn }, b: Uint8Array): void {
    const d = s.data;
    if (d.phase === "control") return this.onControlData(s, b);
    d.buf.push(b.slice());
    d.size += b.length;
    if (d.phase !== "header") {
      // Client bytes that arrive while we decide: keep them (bounded), hand them on after.
      if (d.size > 1 << 20) s.pause();
      return;
    }
    const all = Buffer.concat(d.buf);
    const nl = all.indexOf(10);
    if (nl === -1) {
      if (all.length > HEADER_MAX) s.terminate();
      return;
    }
    let h: Record<string, unknown>;
    try {
      h = JSON.parse(all.subarray(0, nl).toString("utf8")) as Record<string, unknown>;
    } catch {
      s.terminate();
      return;
    }
    if (!this.checkToken(h.token)) {
      s.end(`${JSON.stringify({ ok: false, reason: "bad_request", message: "bad token" })}\n`);
      return;
    }
    const rest = all.subarray(nl + 1);
    if (h.kind === "control") {
      d.phase = "control";
      d.buf = [];
      d.size = 0;
      this.controls.add(s);
      if (rest.length) this.onControlData(s, rest);
      return;
    }
    if (h.kind !== "connect") {
      s.terminate();
      return;
    }
    d.phase = "deciding";
    d.buf = rest.length ? [rest.slice()] : [];
    d.size = rest.length;
    void this.onConnect(s, h).catch((e: unknown) => {
      this.o.log?.(`gateway: ${(e as Error).message}`);
      try {
        s.terminate();
      } catch {}
    });
  }

  private onControlData(s: ConnSocket & { data: GwConn }, b: Uint8Array): void {
    const d = s.data;
    d.ctlBuf = (d.ctlBuf ?? "") + Buffer.from(b).toString("utf8");
    if (d.ctlBuf.length > 1 << 20) return void s.terminate();
    let nl: number;
    while ((nl = d.ctlBuf.indexOf("\n")) !== -1) {
      const line = d.ctlBuf.slice(0, nl);
      d.ctlBuf = d.ctlBuf.slice(nl + 1);
      let req: { id?: unknown; op?: unknown; name?: unknown; qtype?: unknown; ip?: unknown };
      try {
        req = JSON.parse(line);
      } catch {
        continue;
      }
      // A handoff reads its message from the channel right here, in line order (handoff()
      // receives synchronously, before its first await).
      const answer =
        req.op === "fdchan"
          ? Promise.resolve(this.acceptChannel(s))
          : req.op === "connect"
            ? this.handoff(s, req as Record<string, unknown>).catch((e: unknown) => ({ ok: false, reason: "dial_failed", message: (e as Error).message }))
            : this.answerControl(req);
      void answer.then((a) => {
        if (!s.data.closed) s.write(`${JSON.stringify({ id: req.id, ...a })}\n`);
      });
    }
  }

  private allocate(name: string): string | undefined {
    const have = this.nameToIp.get(name);
    if (have) return have;
    if (this.nextSyn > SYN_LAST) return undefined;
    const ip = intToIp(this.nextSyn++);
    this.nameToIp.set(name, ip);
    this.ipToName.set(ip, name);
    return ip;
  }

  private async cachedResolve(name: string): Promise<Resolved> {
    const c = this.resolveCache.get(name);
    const now = Date.now();
    if (c && now - c.at < Math.min(5, "ttl" in c.r ? c.r.ttl : 1) * 1000) return c.r;
    const r = await resolveOnHost(name, this.o.upstream);
    if (this.resolveCache.size > 4096) this.resolveCache.clear();
    this.resolveCache.set(name, { at: now, r });
    return r;
  }

  private async answerControl(req: { op?: unknown; name?: unknown; qtype?: unknown; ip?: unknown }): Promise<Record<string, unknown>> {
    if (req.op === "ptr" && typeof req.ip === "string") {
      const n = this.ipToName.get(req.ip);
      return n ? { rcode: RCODE.NOERROR, name: n } : { rcode: RCODE.NXDOMAIN };
    }
    if (req.op !== "dns" || typeof req.name !== "string") return { rcode: RCODE.FORMERR };
    const qtype = typeof req.qtype === "number" ? req.qtype : QTYPE_A;
    const t0 = performance.now();
    const name = canonicalName(req.name);
    if (qtype === QTYPE_PTR) return { rcode: RCODE.NXDOMAIN };
    if (!name || !nameAllowed(this.rules, name)) {
      this.emit({
        name: name ?? req.name.slice(0, 253),
        port: 0,
        via: "dns",
        decision: "deny",
        reason: "not_allowed",
        message: this.denyMessage(name ?? req.name, 0, "not_allowed"),
        bytes_up: 0,
        bytes_down: 0,
        duration_ms: performance.now() - t0,
      }, this.soleCommand());
      return { rcode: RCODE.NXDOMAIN };
    }
    // The name must exist (a typo gets NXDOMAIN, not a synthetic address that cannot connect).
    const r = await this.cachedResolve(name);
    if ("error" in r) return { rcode: r.error === "nxdomain" ? RCODE.NXDOMAIN : RCODE.SERVFAIL };
    // AAAA, HTTPS, SVCB and everything else: NODATA (no IPv6 path; no hints carrying real addresses).
    if (qtype !== QTYPE_A) return { rcode: RCODE.NOERROR };
    const ip = this.allocate(name);
    return ip ? { rcode: RCODE.NOERROR, a: ip, ttl: SYNTHETIC_TTL } : { rcode: RCODE.SERVFAIL };
  }

  private soleCommand(): CommandEgress | undefined {
    return this.commands.size === 1 ? [...this.commands][0] : undefined;
  }

  /**
   * Which command a client socket belongs to: the gateway's own /proc lookup, never a claim.
   * The lookup reads the world's /proc/net/tcp, which walks the kernel's whole TCP hash
   * (~10-20 ms on this VM), so it runs only when it decides something: with two or more
   * commands running (their bytes and budgets are apart). With one, that one is the answer;
   * `withProcess` (denials) adds the process to the record anyway.
   */
  private attribute(client: { addr?: unknown; port?: unknown } | undefined, withProcess = false): { cmd?: CommandEgress; pid?: number; exe?: string } {
    const sole = this.soleCommand();
    if (this.commands.size <= 1 && !withProcess) return { cmd: sole };
    if (!this.o.netnsPid || !client || typeof client.addr !== "string" || typeof client.port !== "number") return { cmd: sole };
    const pid = findSocketOwner(this.o.netnsPid, client.addr.replace(/^::ffff:/, ""), client.port);
    if (pid === undefined) return { cmd: sole };
    let exe: string | undefined;
    try {
      exe = readlinkSync(`/proc/${pid}/exe`);
    } catch {}
    if (this.commands.size <= 1) return { cmd: sole, pid, exe };
    const byPid = new Map<number, CommandEgress>();
    for (const c of this.commands) if (c.pid !== undefined) byPid.set(c.pid, c);
    // Walk up: the first ancestor whose in-world pid started a command.
    let p: number | undefined = pid;
    for (let i = 0; i < 64 && p !== undefined && p > 1 && p !== this.o.netnsPid; i++) {
      const ns = statusField(p, "NSpid")?.trim().split(/\s+/).map(Number);
      const inWorld = ns?.[ns.length - 1];
      const hit = inWorld !== undefined ? byPid.get(inWorld) : undefined;
      if (hit) return { cmd: hit, pid, exe };
      const pp: number = Number(statusField(p, "PPid"));
      p = Number.isFinite(pp) ? pp : undefined;
    }
    return { pid, exe };
  }

  denyMessage(name: string, port: number, reason: EgressReason, detail?: string): string {
    const where = port ? `${name}:${port}` : name;
    const pol = this.policyId ? `policy ${this.policyId}` : "the world's policy";
    switch (reason) {
      case "not_allowed":
        return `${where} is not in net.allowed of ${pol}; add "${port && port !== 443 && port !== 80 ? `${name}:${port}` : name}" to net.allowed to allow it`;
      case "denied_by_rule":
        return `${where} is denied by net.allowed entry ${detail ?? ""} of ${pol}`.replace("  ", " ");
      case "address_denied":
        return `${where} resolves only to refused addresses (${detail ?? "loopback, link-local, private or the host's own"}); a private range needs an address entry in net.allowed of ${pol}`;
      case "unresolvable":
        return `${where} does not resolve (${detail ?? "no address"})`;
      case "unknown_address":
        return `${where} is not an address this world's DNS handed out; look the name up again`;
      case "ipv6":
        return `${where}: IPv6 egress is not available in worlds`;
      case "budget":
        return `${where}: the command's egress_budget.total_bytes of ${pol} is spent`;
      case "dial_failed":
        return `${where}: connection failed (${detail ?? "no answer"})`;
      default:
        return `${where}: refused (${reason})`;
    }
  }

  private emit(e: Omit<EgressEvent, "world_id">, cmd: CommandEgress | undefined, extra: { pid?: number; exe?: string } = {}): void {
    const ev: EgressEvent = {
      world_id: this.o.worldId,
      ...e,
      duration_ms: Math.round(e.duration_ms * 1000) / 1000,
      ...(cmd?.spanId ? { command_span_id: cmd.spanId } : {}),
      ...(extra.pid ? { pid: extra.pid } : {}),
      ...(extra.exe ? { exe: extra.exe } : {}),
      ...(this.policyId ? { policy_id: this.policyId } : {}),
    };
    if (e.decision === "deny") {
      this.totals.denials++;
      if (cmd && e.message) {
        const key = `${e.name}:${e.port}`;
        if (!cmd.blocked.has(key) && cmd.blocked.size < 100)
          cmd.blocked.set(key, { name: e.name, port: e.port, reason: e.reason, message: e.message, ...(this.policyId ? { policy_id: this.policyId } : {}) });
      }
    }
    // A flood of identical denials (a retry loop, a DNS storm) writes one record per 5 s.
    if (e.decision === "deny") {
      const key = `${e.name}\0${e.port}\0${e.reason}\0${cmd?.spanId ?? ""}`;
      const now = Date.now();
      const last = this.lastDeny.get(key);
      if (last !== undefined && now - last < 5000) return;
      if (this.lastDeny.size > 10_000) this.lastDeny.clear();
      this.lastDeny.set(key, now);
    }
    try {
      this.o.onEvent?.(ev, cmd);
    } catch (err) {
      this.o.log?.(`egress event: ${(err as Error).message}`);
    }
  }

  /**
   * The decision for one connection, from a request's name/ip + port (the helper's claim,
   * re-checked here against this world's rules) to a dialed, vetted upstream. A denial is
   * recorded here; the caller only tells the helper. `alive()` false = the client went away.
   */
  private async decide(h: Record<string, unknown>, client: { addr?: unknown; port?: unknown } | undefined, alive: () => boolean): Promise<Decided> {
    const t0 = performance.now();
    const via: EgressEvent["via"] = h.via === "socks" || h.via === "transparent" ? h.via : "proxy";
    const port = typeof h.port === "number" && Number.isInteger(h.port) && h.port >= 1 && h.port <= 65535 ? h.port : 0;
    let who = this.attribute(client);
    const cmd = who.cmd;
    let name: string | null = null;
    let literal: string | null = null;
    const rawName = typeof h.name === "string" ? h.name : undefined;
    const rawIp = typeof h.ip === "string" ? h.ip : undefined;
    const target = rawIp ?? rawName ?? "";
    const deny = (reason: EgressReason, shown: string, detail?: string, addr?: string): Decided => {
      const message = this.denyMessage(shown, port, reason, detail);
      // A denial is worth naming the process (rare, and what a user acts on).
      if (who.pid === undefined) who = { ...this.attribute(client, true), cmd };
      this.emit({ name: shown, port, via, decision: "deny", reason, message, bytes_up: 0, bytes_down: 0, duration_ms: performance.now() - t0, ...(addr ? { addr } : {}) }, cmd, who);
      return { ok: false, reason, message };
    };
    if (port === 0) return deny("bad_request", target.slice(0, 253) || "?");
    if (target.includes(":") || target.startsWith("[")) return deny("ipv6", target.slice(0, 64));
    if (isIpv4(target)) {
      if (isSynthetic(target)) {
        const n = this.ipToName.get(target);
        if (!n) return deny("unknown_address", target);
        name = n;
      } else literal = target;
    } else {
      name = canonicalName(target);
      if (!name) return deny("bad_request", target.slice(0, 253));
    }
    const shown = name ?? literal!;
    const v = decide(this.rules, { name, ip: literal, port });
    if (!v.allow) return deny(v.reason, shown, v.rule?.text);
    if (cmd?.spent()) return deny("budget", shown);

    let candidates: string[];
    if (literal) candidates = [literal];
    else {
      const r = await this.cachedResolve(name!);
      if ("error" in r) return deny("unresolvable", shown, r.detail);
      candidates = r.addrs;
    }
    const refused: string[] = [];
    const ok = candidates.filter((a) => {
      const byRule = addressDeniedByRule(this.rules, a);
      const c = classify(a);
      const pass = !byRule && (c.cls === "public" || (c.cls === "private" && addressAllowedByRule(this.rules, a)));
      if (!pass) refused.push(`${a} ${byRule ? `denied by ${byRule.text}` : c.cls === "private" ? "private" : c.why}`);
      return pass;
    });
    if (ok.length === 0) return deny("address_denied", shown, refused.join(", "), candidates[0]);

    // Dial exactly a vetted address (the first that answers).
    let lastErr = "";
    for (const addr of ok.slice(0, 4)) {
      if (!alive()) return { ok: false, reason: "dial_failed", message: "client gone" };
      const up = await dial(addr, port).catch((e: unknown) => {
        lastErr = (e as Error).message;
        return undefined;
      });
      if (!up) continue;
      if (!alive()) {
        up.terminate();
        return { ok: false, reason: "dial_failed", message: "client gone" };
      }
      return { ok: true, up, addr, shown, port, via, cmd, who, t0 };
    }
    return deny("dial_failed", shown, lastErr || "refused");
  }

  /** Splice a decided connection: byte counts per direction, the command's budget, one event at the end. */
  /** Sockets this gateway relays itself are closed with it (world teardown). */
  private track(sock: ConnSocket): void {
    if (this.live.has(sock)) return;
    this.live.add(sock);
    const prev = sock.data.onClose;
    sock.data.onClose = () => {
      prev?.();
      this.live.delete(sock);
    };
  }

  private spliceDecided(client: ConnSocket, d: Extract<Decided, { ok: true }>, pendingUp?: Uint8Array, preface?: Uint8Array): void {
    this.track(client);
    this.track(d.up);
    const early = d.up.data.early as Uint8Array[] | undefined;
    d.up.data.early = undefined;
    d.up.data.onData = undefined;
    this.totals.connections++;
    if (d.cmd) d.cmd.connections++;
    let up_ = 0;
    let down = 0;
    const cmd = d.cmd;
    splice(client, d.up, {
      onBytes: (dir, n) => {
        if (dir === "up") {
          up_ += n;
          this.totals.bytes_up += n;
        } else {
          down += n;
          this.totals.bytes_down += n;
        }
        return cmd && !cmd.ended ? cmd.count(dir, n) : undefined;
      },
      onDone: () =>
        this.emit({ name: d.shown, port: d.port, via: d.via, decision: "allow", reason: "allowed", addr: d.addr, bytes_up: up_, bytes_down: down, duration_ms: performance.now() - d.t0 }, cmd, d.who),
    }, pendingUp, early?.length ? Buffer.concat(early) : undefined, preface);
  }

  /** The relay path: the helper's gateway connection carries the bytes (fallback when no socket was handed over). */
  private async onConnect(s: ConnSocket & { data: GwConn }, h: Record<string, unknown>): Promise<void> {
    const d = await this.decide(h, h.client as { addr?: unknown; port?: unknown } | undefined, () => !s.data.closed);
    if (!d.ok) {
      if (!s.data.closed) s.end(`${JSON.stringify({ ok: false, reason: d.reason, message: d.message })}\n`);
      return;
    }
    s.write(`${JSON.stringify({ ok: true, addr: d.addr })}\n`);
    const pending = s.data.buf.length ? Buffer.concat(s.data.buf) : undefined;
    s.data.buf = [];
    s.data.phase = "spliced";
    s.resume();
    this.spliceDecided(s, d, pending);
  }

  // -------------------------------------------------------------------------------------------
  // Socket handoff (fdpass.ts): the helper passes the world's accepted client socket, the
  // gateway splices it with the upstream itself — one relay, not two.

  /** Control `fdchan`: accept the helper's handoff channel (its first message is the world's token). */
  private acceptChannel(s: ConnSocket & { data: GwConn }): Record<string, unknown> {
    if (this.fdListen === undefined) return { ok: false, reason: "bad_request", message: "no handoff channel" };
    for (let i = 0; i < 8; i++) {
      const fd = acceptNonBlocking(this.fdListen);
      if (fd < 0) break;
      const m = recvWithFds(fd, 256);
      const good = m !== null && m !== "gone" && m.fds.length === 0 && !m.truncated && this.checkToken(Buffer.from(m.data).toString("utf8").trim());
      if (m && m !== "gone") for (const f of m.fds) closeFd(f);
      if (!good) {
        closeFd(fd);
        continue;
      }
      if (s.data.chan !== undefined) closeFd(s.data.chan);
      s.data.chan = fd;
      return { ok: true };
    }
    return { ok: false, reason: "bad_request", message: "no handoff channel presented the token" };
  }

  /**
   * Control `connect` with a handed-over socket: the message waiting on this control
   * connection's channel (the helper sent it before the line) carries the client socket and
   * the bytes already read from it. The socket is checked before anything else; on a
   * transparent connection the destination is the socket's own SO_ORIGINAL_DST, not the claim.
   */
  private async handoff(s: ConnSocket & { data: GwConn }, req: Record<string, unknown>): Promise<Record<string, unknown>> {
    const bad = (message: string) => {
      this.o.log?.(`[${this.o.worldId}] gateway: socket handoff refused: ${message}`);
      return { ok: false, reason: "bad_request", message: `socket handoff refused: ${message}` };
    };
    const chan = s.data.chan;
    if (chan === undefined) return bad("no channel");
    const m = recvWithFds(chan);
    if (m === null || m === "gone") return bad("no socket waiting");
    const fd = m.fds[0];
    for (const extra of m.fds.slice(1)) closeFd(extra);
    const nl = m.data.indexOf(10);
    let meta: { id?: unknown; down?: unknown } = {};
    try {
      meta = JSON.parse(Buffer.from(m.data.subarray(0, nl < 0 ? m.data.length : nl)).toString("utf8"));
    } catch {}
    const refuse = (why: string) => {
      if (fd !== undefined) closeFd(fd);
      return bad(why);
    };
    if (fd === undefined || m.fds.length !== 1 || m.truncated) return refuse("expected exactly one socket");
    if (meta.id !== req.id) return refuse("out of order");
    const via = req.via === "socks" || req.via === "transparent" ? req.via : "proxy";
    const info = checkPassedSocket(fd, { netns: this.netns, ports: via === "transparent" ? [TRANSPARENT_PORT] : [PROXY_PORT] });
    if (typeof info === "string") return refuse(info);
    const h: Record<string, unknown> = { via, port: req.port, name: req.name, ip: req.ip };
    if (via === "transparent") {
      const dst = originalDstOf(fd);
      if (!dst) return refuse("no original destination");
      h.ip = dst.ip;
      h.port = dst.port;
      h.name = undefined;
    }
    const pendingUp = nl >= 0 && nl + 1 < m.data.length ? m.data.slice(nl + 1) : undefined;
    const preface = typeof meta.down === "string" && meta.down.length > 0 ? Buffer.from(meta.down, "base64") : undefined;
    let d: Decided;
    try {
      d = await this.decide(h, info.peer, () => !this.closed);
    } catch (e) {
      closeFd(fd);
      throw e;
    }
    if (!d.ok) {
      closeFd(fd); // the helper still holds its copy and renders the denial
      return { ok: false, reason: d.reason, message: d.message };
    }
    this.totals.handoffs++;
    if (this.o.kernelRelay !== false && !d.cmd?.budgeted && this.kernelSplice(fd, d, pendingUp, preface)) return { ok: true, addr: d.addr, adopted: true, kernel: true };
    let client: ConnSocket;
    try {
      client = await adopt(fd);
    } catch (e) {
      closeFd(fd);
      d.up.terminate();
      return { ok: false, reason: "dial_failed", message: `cannot adopt the client socket: ${(e as Error).message}` };
    }
    this.spliceDecided(client, d, pendingUp, preface);
    return { ok: true, addr: d.addr, adopted: true };
  }

  /**
   * The kernel relay for a handed-over connection (kernel-relay.ts): the first bytes (the
   * proxy's reply, what the upstream already sent, what the client already sent) are written
   * here; if a socket does not take them at once, false (the Bun relay takes over, nothing
   * lost). Then the upstream's descriptor leaves its Bun socket (dup + a plain close) and both
   * go to the worker.
   */
  private kernelSplice(fd: number, d: Extract<Decided, { ok: true }>, pendingUp?: Uint8Array, preface?: Uint8Array): boolean {
    const kr = kernelRelay();
    const upFd = (d.up as unknown as { fd?: number }).fd;
    if (!kr || typeof upFd !== "number" || upFd < 0 || d.up.data.closed) return false;
    const early = d.up.data.early as Uint8Array[] | undefined;
    const down = Buffer.concat([...(preface ? [preface] : []), ...(early ?? [])]);
    const upFirst = pendingUp ?? new Uint8Array(0);
    // Check first that both take their first bytes whole (fresh sockets: they do).
    if (down.length > 0) {
      const left = writeRaw(fd, down);
      if (left.length > 0) {
        // Partly written: hand the rest to the Bun relay as the client's preface.
        d.up.data.early = undefined;
        const rest = Buffer.from(left);
        void adopt(fd).then(
          (client) => this.spliceDecided(client, d, pendingUp, rest),
          () => (closeFd(fd), d.up.terminate()),
        );
        return true;
      }
    }
    let earlyDown = 0;
    for (const e of early ?? []) earlyDown += e.length;
    d.up.data.early = undefined;
    let sentUp = 0;
    if (upFirst.length > 0) {
      const left = writeRaw(upFd, upFirst);
      sentUp = upFirst.length - left.length;
      if (left.length > 0) {
        const rest = Buffer.from(left);
        void adopt(fd).then(
          (client) => this.spliceDecided(client, d, rest),
          () => (closeFd(fd), d.up.terminate()),
        );
        this.totals.bytes_up += sentUp;
        if (d.cmd) d.cmd.bytesUp += sentUp;
        return true;
      }
    }
    const raw = dupFd(upFd);
    if (raw < 0) return false;
    d.up.data.onData = undefined;
    d.up.data.onClose = undefined;
    (d.up as unknown as { close(): void }).close(); // the fd only; the connection lives on in `raw`
    const cmd = d.cmd;
    this.totals.connections++;
    if (cmd) cmd.connections++;
    const k = kr.relay(fd, raw, (r) => {
      this.kernelConns.delete(k!);
      cmd?.kernelLive.delete(k!);
      const up = r.up + sentUp;
      const dn = r.down + earlyDown;
      this.totals.bytes_up += up;
      this.totals.bytes_down += dn;
      if (cmd) {
        cmd.bytesUp += up;
        cmd.bytesDown += dn;
      }
      this.emit({ name: d.shown, port: d.port, via: d.via, decision: "allow", reason: "allowed", addr: d.addr, bytes_up: up, bytes_down: dn, duration_ms: performance.now() - d.t0 }, cmd, d.who);
    });
    if (!k) {
      // No worker: the descriptors are still ours; the Bun relay takes both.
      this.totals.connections--;
      if (cmd) cmd.connections--;
      void Promise.all([adopt(fd), adopt(raw)]).then(
        ([client, up]) => this.spliceDecided(client, { ...d, up }, undefined, undefined),
        () => (closeFd(fd), closeRaw(raw)),
      );
      return true;
    }
    this.kernelConns.add(k);
    cmd?.kernelLive.add(k);
    this.totals.kernel++;
    return true;
  }

  /** Bytes of connections still in the kernel relay (world.ts bytes()). */
  kernelBytes(): number {
    let n = 0;
    for (const k of this.kernelConns) {
      const l = k.live();
      n += l.up + l.down;
    }
    return n;
  }
}

type Decided =
  | { ok: true; up: ConnSocket; addr: string; shown: string; port: number; via: EgressEvent["via"]; cmd?: CommandEgress; who: { cmd?: CommandEgress; pid?: number; exe?: string }; t0: number }
  | { ok: false; reason: EgressReason; message: string };

/** A handed-over descriptor as a Bun socket (Bun.connect({ fd }) adopts it; it owns the fd from here). */
function adopt(fd: number): Promise<ConnSocket> {
  return new Promise((resolve, reject) => {
    let settled = false;
    Bun.connect<Conn>({
      fd,
      allowHalfOpen: true,
      data: {},
      socket: {
        ...(connHandlers as unknown as Bun.SocketHandler<Conn>),
        open(s: Bun.Socket<Conn>) {
          if (settled) return;
          settled = true;
          s.setNoDelay?.(true);
          resolve(s as unknown as ConnSocket);
        },
        connectError(_s: Bun.Socket<Conn>, e: Error) {
          if (!settled) {
            settled = true;
            reject(e);
          }
        },
      },
    } as unknown as Parameters<typeof Bun.connect<Conn>>[0]).catch((e: unknown) => {
      if (!settled) {
        settled = true;
        reject(e as Error);
      }
    });
  });
}

function dial(addr: string, port: number): Promise<ConnSocket> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      if (!settled) {
        settled = true;
        reject(new Error(`no answer from ${addr}:${port} within 10 s`));
      }
    }, 10_000);
    Bun.connect<Conn>({
      allowHalfOpen: true,
      hostname: addr,
      port,
      data: {},
      socket: {
        ...(connHandlers as unknown as Bun.SocketHandler<Conn>),
        open(s) {
          clearTimeout(timer);
          if (settled) return void s.terminate();
          settled = true;
          s.setNoDelay?.(true);
          // What the upstream sends before the splice is wired (an SSH banner, while the client
          // socket is adopted) is kept and goes to the client first.
          s.data.onData = (b) => void ((s.data.early as Uint8Array[] | undefined) ?? (s.data.early = [])).push(b.slice());
          resolve(s as unknown as ConnSocket);
        },
        connectError(_s, e) {
          clearTimeout(timer);
          if (!settled) {
            settled = true;
            reject(e);
          }
        },
      },
    }).catch((e: unknown) => {
      clearTimeout(timer);
      if (!settled) {
        settled = true;
        reject(e as Error);
      }
    });
  });
}
