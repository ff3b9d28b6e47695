/**
 * Issue 18.4 (back-pressure) test helpers: clients on raw Unix sockets, so that "the client
 * reads nothing" is exactly that — the socket is paused and the kernel's receive buffer fills
 * (no library reading ahead into its own memory) — and the agent's RSS from /proc.
 */
import { readdirSync, readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostArgv, pidsMentioning } from "../helpers/agent.ts";

export const MiB = 2 ** 20;

/** VmRSS of a process, bytes. */
export const rssOf = (pid: number): number => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) * 1024;

/** Samples the RSS growth of each process over its `baseline` every 250 ms for `ms`; returns the peaks. */
export async function peakRssGrowth(procs: { pid: number; baseline: number }[], ms: number): Promise<number[]> {
  const peak = procs.map(() => 0);
  const end = Date.now() + ms;
  while (Date.now() < end) {
    procs.forEach((p, i) => {
      if (!p.pid) return;
      try {
        peak[i] = Math.max(peak[i]!, rssOf(p.pid) - p.baseline);
      } catch {}
    });
    await Bun.sleep(250);
  }
  return peak;
}

/** Processes below `root` (by parent pid) whose command line contains `needle`. */
export function descendantsMatching(root: number, needle: string): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {}
  }
  const below = (pid: number): boolean => {
    for (let p = parent.get(pid), n = 0; p !== undefined && n < 64; p = parent.get(p), n++) if (p === root) return true;
    return false;
  };
  return [...parent.keys()].filter((pid) => {
    if (!below(pid)) return false;
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(needle);
    } catch {
      return false;
    }
  });
}

async function connected(path: string): Promise<Socket> {
  const sock: Socket = connect(path);
  await new Promise<void>((resolve, reject) => {
    sock.once("connect", () => resolve());
    sock.once("error", reject);
  });
  return sock;
}

/**
 * Checks a byte stream against an expected generator chunk by chunk, without keeping it:
 * `yes` (`y\n` × yesBytes) followed by `seq 1 seqN`.
 */
export class PatternCheck {
  bytes = 0;
  ok = true;
  firstBad?: number;
  /** Lines after the `seq` (a command's last words). */
  readonly extra: string[] = [];
  private next = 1;
  private line = "";
  constructor(
    private readonly yesBytes: number,
    private readonly seqN: number,
  ) {}
  get expectedBytes(): number {
    let n = this.yesBytes;
    for (let d = 1, lo = 1; lo <= this.seqN; d++, lo *= 10) n += (Math.min(this.seqN, lo * 10 - 1) - lo + 1) * (d + 1);
    return n;
  }
  push(b: Uint8Array): void {
    let i = 0;
    for (; i < b.length && this.bytes + i < this.yesBytes; i++) {
      if (this.ok && b[i] !== ((this.bytes + i) % 2 === 0 ? 0x79 : 0x0a)) this.bad(this.bytes + i);
    }
    if (i < b.length) {
      const text = this.line + Buffer.from(b.subarray(i)).toString("latin1");
      const parts = text.split("\n");
      this.line = parts.pop()!;
      for (const p of parts) {
        if (this.next > this.seqN) {
          this.extra.push(p);
          continue;
        }
        if (this.ok && p !== String(this.next)) this.bad(this.bytes);
        this.next++;
      }
    }
    this.bytes += b.length;
  }
  /** Everything arrived, in order, nothing after but `extra` lines. */
  get complete(): boolean {
    const extraBytes = this.extra.reduce((n, l) => n + l.length + 1, 0);
    return this.ok && this.line === "" && this.next === this.seqN + 1 && this.bytes === this.expectedBytes + extraBytes;
  }
  private bad(at: number): void {
    this.ok = false;
    this.firstBad = at;
  }
}

/**
 * POST /v1/execute with `stream: true` on a raw socket; the response (chunked NDJSON) is
 * decoded as it arrives. `sock.pause()` is a client that stops reading.
 */
export async function rawNdjsonExecute(path: string, body: unknown) {
  const sock = await connected(path);
  const json = Buffer.from(JSON.stringify(body));
  sock.write(`POST /v1/execute HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${json.length}\r\nConnection: close\r\n\r\n`);
  sock.write(json);
  const out = {
    sock,
    status: 0,
    onFrame: (_f: { type: string; data_b64?: string; result?: { exit: number }; error?: unknown }) => {},
  };
  let buf: Buffer = Buffer.alloc(0);
  let headersDone = false;
  let chunked = false;
  let chunkLeft = -1; // bytes left in the current chunk; -1: at a size line
  let ended = false;
  let text = "";
  const line = (l: string) => {
    if (l.trim()) out.onFrame(JSON.parse(l));
  };
  const body_ = (b: Buffer) => {
    text += b.toString("latin1"); // NDJSON is ASCII (base64 payloads)
    let nl: number;
    while ((nl = text.indexOf("\n")) >= 0) {
      line(text.slice(0, nl));
      text = text.slice(nl + 1);
    }
  };
  sock.on("data", (c: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, c]) : c;
    if (!headersDone) {
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buf.subarray(0, end).toString();
      out.status = Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 0);
      chunked = /transfer-encoding:\s*chunked/i.test(head);
      headersDone = true;
      buf = buf.subarray(end + 4);
    }
    if (!chunked) {
      body_(buf);
      buf = Buffer.alloc(0);
      return;
    }
    for (;;) {
      if (ended) return;
      if (chunkLeft < 0) {
        const e = buf.indexOf("\r\n");
        if (e < 0) return;
        chunkLeft = parseInt(buf.subarray(0, e).toString(), 16);
        buf = buf.subarray(e + 2);
        if (chunkLeft === 0) {
          ended = true; // the last chunk
          return;
        }
      }
      if (chunkLeft > 0) {
        const take = Math.min(buf.length, chunkLeft);
        if (take === 0) return;
        body_(buf.subarray(0, take));
        buf = buf.subarray(take);
        chunkLeft -= take;
        if (chunkLeft > 0) return;
      }
      if (buf.length < 2) return; // the CRLF after the chunk
      buf = buf.subarray(2);
      chunkLeft = -1;
    }
  });
  return out;
}

/** WebSocket over a unix socket, by hand (RFC 6455): masked frames out, frames in. */
export async function rawWebSocket(path: string, url: string) {
  const sock = await connected(path);
  const key = randomBytes(16).toString("base64");
  sock.write(`GET ${url} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  const out = {
    sock,
    onFrame: (_opcode: number, _payload: Buffer) => {},
    send(opcode: number, payload: Buffer) {
      const mask = randomBytes(4);
      const len = payload.length;
      const head = len < 126 ? Buffer.from([0x80 | opcode, 0x80 | len]) : len < 65536 ? Buffer.from([0x80 | opcode, 0x80 | 126, len >> 8, len & 255]) : (() => {
        const h = Buffer.alloc(10);
        h[0] = 0x80 | opcode;
        h[1] = 0x80 | 127;
        h.writeBigUInt64BE(BigInt(len), 2);
        return h;
      })();
      const body = Buffer.from(payload);
      for (let i = 0; i < body.length; i++) body[i]! ^= mask[i % 4]!;
      sock.write(Buffer.concat([head, mask, body]));
    },
    sendText(t: string) {
      this.send(1, Buffer.from(t));
    },
  };
  let buf: Buffer = Buffer.alloc(0);
  let upgraded = false;
  await new Promise<void>((resolve, reject) => {
    sock.on("data", (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      if (!upgraded) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buf.subarray(0, end).toString();
        if (!head.startsWith("HTTP/1.1 101")) return reject(new Error(`no upgrade: ${head}`));
        upgraded = true;
        buf = buf.subarray(end + 4);
        resolve();
      }
      for (;;) {
        if (buf.length < 2) return;
        const opcode = buf[0]! & 0x0f;
        let len = buf[1]! & 0x7f;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          off = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          off = 10;
        }
        if (buf.length < off + len) return;
        const payload = buf.subarray(off, off + len);
        buf = buf.subarray(off + len);
        if (opcode === 9) out.send(10, Buffer.from(payload)); // ping → pong
        else out.onFrame(opcode, payload);
      }
    });
    sock.once("error", reject);
  });
  return out;
}

/** What a non-reading client saw (nonReadingClient). */
export interface NonReadingResult {
  /** Peak RSS growth while the client read nothing: the agent, and the world's spawner (0 if not sampled). */
  agentPeak: number;
  spawnerPeak: number;
  /** The host proxy's (`proxyPid`), 0 if not sampled. */
  proxyPeak: number;
  /** The command was still running at the end of the pause (blocked, not finished into a buffer). */
  stillRunning: boolean;
  stdout: PatternCheck;
  stderr: PatternCheck;
  exit?: number;
  error?: unknown;
  status?: number;
}

/**
 * One issue-18.4 scenario: a client starts `{ yes | head -c yesBytes; seq 1 seqN; }` (and, with
 * `stderrSeq`, `seq 1 stderrSeq >&2` beside it), stops reading its socket for `pauseMs`
 * (sampling the agent's — and the spawner's — RSS), then reads everything.
 * - `ndjson`: POST /v1/execute `stream: true`;
 * - `stream`: /v1/stream `pty: false` (stdout binary frames, stderr messages);
 * - `pty`: /v1/stream `pty: true` (`stty -opost` first, so the bytes are the pattern's; a
 *   resize sent just before the pause shows up as the last line, `stty size`; exits 3).
 * `mark` is a unique word on the command line (the command is found in /proc by it).
 */
export async function nonReadingClient(o: {
  mode: "ndjson" | "stream" | "pty";
  socket: string;
  agentPid: number;
  spawnerPid?: number;
  /** a `substrate proxy` in between (`socket` is then its socket): sampled too */
  proxyPid?: number;
  proj: string;
  agentId: string;
  yesBytes: number;
  seqN: number;
  stderrSeq?: number;
  pauseMs: number;
  mark: string;
  /** an isolated world (overlay project, the isolated hardening profile) */
  isolated?: boolean;
}): Promise<NonReadingResult> {
  const procs = [o.agentPid, o.spawnerPid ?? 0, o.proxyPid ?? 0].map((pid) => ({ pid, baseline: pid ? rssOf(pid) : 0 }));
  const stdout = new PatternCheck(o.yesBytes, o.seqN);
  const stderr = new PatternCheck(0, o.stderrSeq ?? 0);
  const r: Partial<NonReadingResult> = {};
  const body = `{ yes | head -c ${o.yesBytes}; seq 1 ${o.seqN}; }`;
  const bg = o.stderrSeq ? `seq 1 ${o.stderrSeq} >&2 & ` : "";
  const common = { cwd: o.proj, agent_id: o.agentId, world: { project_dir: o.proj }, ...(o.isolated ? { isolated: true } : {}) };
  let sock: Socket;
  let done: Promise<void>;
  if (o.mode === "ndjson") {
    const c = await rawNdjsonExecute(o.socket, { cmd: `${bg}${body}; wait; : ${o.mark}`, stream: true, ...common });
    sock = c.sock;
    done = new Promise<void>((resolve) => {
      c.onFrame = (f) => {
        if (f.type === "stdout") stdout.push(Buffer.from(f.data_b64!, "base64"));
        else if (f.type === "stderr") stderr.push(Buffer.from(f.data_b64!, "base64"));
        else if (f.type === "result") r.exit = f.result!.exit;
        else if (f.type === "error") r.error = f.error;
      };
      c.sock.on("close", () => {
        r.status = c.status;
        resolve();
      });
    });
  } else {
    const pty = o.mode === "pty";
    const ws = await rawWebSocket(o.socket, "/v1/stream");
    sock = ws.sock;
    done = new Promise<void>((resolve) => {
      ws.onFrame = (opcode, buf) => {
        if (opcode === 2) return stdout.push(buf);
        if (opcode !== 1) return;
        const m = JSON.parse(buf.toString("utf8"));
        if (m.type === "stderr") stderr.push(Buffer.from(m.data_b64, "base64"));
        // The exit message comes after all output; the close handshake that follows is not
        // answered by this raw client (ws would wait 30 s for it), so the exit ends the session.
        if (m.type === "exit") {
          r.exit = m.code;
          resolve();
        }
        if (m.type === "error") r.error = m;
      };
      ws.sock.on("close", () => resolve());
    });
    const cmd = pty ? `stty -opost; ${bg}${body}; wait; stty size; exit 3; : ${o.mark}` : `${bg}${body}; wait; : ${o.mark}`;
    ws.sendText(JSON.stringify({ type: "start", cmd, pty, cols: 80, rows: 24, ...common }));
    if (pty) ws.sendText(JSON.stringify({ type: "resize", cols: 132, rows: 43 }));
  }
  // The client stops reading.
  sock.pause();
  const [agentPeak, spawnerPeak, proxyPeak] = (await peakRssGrowth(procs, o.pauseMs)) as [number, number, number];
  const stillRunning = pidsMentioning(o.mark).length > 0;
  sock.resume();
  await done;
  sock.destroy();
  return { ...r, agentPeak, spawnerPeak, proxyPeak, stillRunning, stdout, stderr };
}

/** `substrate proxy` as users run it (its own process) in front of `agentSocket`; `stop()` ends it and removes its dir. */
export async function startProxyProcess(agentSocket: string, warm: { cwd: string; agent_id: string }): Promise<{ pid: number; socket: string; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "substrate-bp-proxy-"));
  const socket = join(dir, "sock", "agent.sock");
  const proxy = Bun.spawn([...hostArgv(), "proxy", "--socket", socket, "--agent-socket", agentSocket, "--audit", join(dir, "audit.jsonl"), "--rate", "100000"], {
    env: { ...process.env, SUBSTRATE_TRACE: join(dir, "trace.jsonl") },
    stdout: "ignore",
    stderr: "ignore",
  });
  const stop = async () => {
    proxy.kill("SIGTERM");
    await proxy.exited;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < 400; i++) {
      try {
        if ((await fetch("http://localhost/v1/capabilities", { unix: socket } as RequestInit)).ok) break;
      } catch {}
      await Bun.sleep(25);
    }
    // its path warm (policy load, agent connection) before any baseline
    const body = JSON.stringify({ cmd: "true", cwd: warm.cwd, agent_id: warm.agent_id, world: { project_dir: warm.cwd } });
    await fetch("http://localhost/v1/execute", { method: "POST", unix: socket, headers: { "content-type": "application/json" }, body } as RequestInit).then((r) => r.text());
  } catch (e) {
    await stop();
    throw e;
  }
  return { pid: proxy.pid, socket, stop };
}
