/**
 * Helpers for the agent API tests (api*, stream*, proxy*, fuzz*): a real agent from source
 * (`bun agent/main.ts --listen <tmp> --state-dir <tmp>`, trace in the temp dir), raw HTTP
 * over its socket, and a WebSocket stream client that records bytes and control messages.
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { WebSocket, type RawData } from "ws";
import { StreamServerMessage } from "../../src/contract/index.ts";
import { BUN, ROOT, startAgent, type TestAgent } from "../helpers/agent.ts";

export { eventually, pidsMentioning, tempProject, b64 } from "../helpers/agent.ts";

export interface ApiAgent extends TestAgent {
  trace: string;
}

/** A real agent from this source tree (never a stale dist/ build). */
export async function startSourceAgent(env: Record<string, string> = {}): Promise<ApiAgent> {
  const dir = (await import("node:fs")).mkdtempSync(join((await import("node:os")).tmpdir(), "substrate-api-"));
  const trace = join(dir, "trace.jsonl");
  const a = await startAgent({ argv: [BUN, join(ROOT, "agent/main.ts")], env: { SUBSTRATE_TRACE: trace, ...env } });
  const stop = a.stop.bind(a);
  return Object.assign(a, {
    trace,
    async stop() {
      await stop();
      (await import("node:fs")).rmSync(dir, { recursive: true, force: true });
    },
  });
}

/** World dirs the agent still has (leak check after stop: the state dir is gone). */
export const worldDirs = (stateDir: string): string[] => {
  const d = join(stateDir, "worlds");
  return existsSync(d) ? readdirSync(d) : [];
};

export interface HttpAnswer {
  status: number;
  body: any;
  text: string;
  headers: Headers;
}

export async function http(sock: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<HttpAnswer> {
  const res = await fetch(`http://localhost${path}`, {
    method,
    unix: sock,
    headers: { ...(body !== undefined ? { "content-type": "application/json" } : {}), ...headers },
    body: body === undefined ? undefined : typeof body === "string" || body instanceof Uint8Array ? body : JSON.stringify(body),
  } as RequestInit);
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, body: parsed, text, headers: res.headers };
}

export interface StreamExit {
  code: number;
  signal: string | null;
  timed_out?: boolean;
}

/** A WebSocket session on /v1/stream that keeps everything it receives. */
export class StreamClient {
  readonly ws: WebSocket;
  readonly chunks: Buffer[] = [];
  readonly messages: StreamServerMessage[] = [];
  closeCode?: number;
  readonly opened: Promise<void>;
  readonly closed: Promise<number>;
  private waiters: (() => void)[] = [];

  constructor(sock: string, headers: Record<string, string> = {}) {
    this.ws = new WebSocket(`ws+unix://${sock}:/v1/stream`, { headers });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once("open", () => resolve());
      this.ws.once("error", reject);
    });
    this.closed = new Promise((resolve) =>
      this.ws.on("close", (code: number) => {
        this.closeCode = code;
        this.notify();
        resolve(code);
      }),
    );
    this.ws.on("error", () => {});
    this.ws.on("message", (d: RawData, binary: boolean) => {
      const buf = Array.isArray(d) ? Buffer.concat(d) : Buffer.from(d as ArrayBuffer);
      if (binary) this.chunks.push(buf);
      else this.messages.push(StreamServerMessage.parse(JSON.parse(buf.toString("utf8"))));
      this.notify();
    });
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
  text(): string {
    return this.bytes().toString("latin1");
  }

  /** Wait until `pred` holds (re-checked on every frame); fails when the socket closes first. */
  async until(pred: () => boolean, what: string, ms = 20_000): Promise<void> {
    const end = Date.now() + ms;
    while (!pred()) {
      if (this.closeCode !== undefined) throw new Error(`stream closed (${this.closeCode}) while waiting for ${what}; got ${JSON.stringify(this.text().slice(-500))} ${JSON.stringify(this.messages)}`);
      if (Date.now() > end) throw new Error(`no ${what} after ${ms} ms; got ${JSON.stringify(this.text().slice(-500))} ${JSON.stringify(this.messages)}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 200);
      });
    }
  }
  untilText(s: string | RegExp, ms?: number): Promise<void> {
    return this.until(() => (typeof s === "string" ? this.text().includes(s) : s.test(this.text())), `output ${s}`, ms);
  }
  msg<T extends StreamServerMessage["type"]>(type: T): Extract<StreamServerMessage, { type: T }> | undefined {
    return this.messages.find((m) => m.type === type) as Extract<StreamServerMessage, { type: T }> | undefined;
  }
  async started(): Promise<Extract<StreamServerMessage, { type: "started" }>> {
    await this.until(() => this.msg("started") !== undefined, "started");
    return this.msg("started")!;
  }
  async exit(ms?: number): Promise<StreamExit> {
    // An error frame on a live session is not the end; a closed socket without `exit` is.
    await this.until(() => this.msg("exit") !== undefined || (this.msg("error") !== undefined && this.closeCode !== undefined) || this.closeCode !== undefined, "exit", ms).catch(() => {});
    const e = this.msg("exit");
    if (!e) throw new Error(`stream error: ${JSON.stringify(this.msg("error"))}`);
    return { code: e.code, signal: e.signal, ...(e.timed_out ? { timed_out: true } : {}) };
  }

  send(b: string | Uint8Array): void {
    this.ws.send(typeof b === "string" ? Buffer.from(b, "utf8") : b, { binary: true });
  }
  control(m: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(m));
  }
  close(): void {
    this.ws.close();
  }
}

export async function openStream(sock: string, start: Record<string, unknown>, headers?: Record<string, string>): Promise<StreamClient> {
  const c = new StreamClient(sock, headers);
  await c.opened;
  c.control({ type: "start", ...start });
  return c;
}

/** Spans of a trace file (one JSON per line). */
export async function spansIn(file: string): Promise<any[]> {
  if (!existsSync(file)) return [];
  return (await Bun.file(file).text())
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}
