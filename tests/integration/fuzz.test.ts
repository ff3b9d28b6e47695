/**
 * 10,000 malformed or random requests against a real agent (raw HTTP/1.1 over its Unix
 * socket, so nothing is normalised by a client library): fuzzed bodies, wrong types, unknown
 * keys, huge payloads, invalid UTF-8, unknown routes and methods, garbage request lines,
 * random WebSocket first frames, and slowloris-style partial requests held open while the
 * agent must keep answering. Every answer must be a JSON 4xx error body; the agent must not
 * crash and must still serve real requests afterwards. Deterministic (seeded PRNG).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createConnection, type Socket } from "node:net";
import { rmSync } from "node:fs";
import { http, StreamClient, startSourceAgent, tempProject, worldDirs, type ApiAgent } from "./api-helpers.ts";

let agent: ApiAgent;
let proj: string;

beforeAll(async () => {
  proj = tempProject();
  agent = await startSourceAgent();
});
afterAll(async () => {
  const state = agent.stateDir;
  await agent.stop();
  expect(worldDirs(state)).toEqual([]);
  rmSync(proj, { recursive: true, force: true });
});

/** mulberry32: small, seeded, good enough to vary inputs reproducibly. */
function prng(seed: number) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = prng(0x5eed);
const int = (n: number) => Math.floor(rand() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));

function randomJson(depth = 0): unknown {
  switch (int(depth > 3 ? 6 : 9)) {
    case 0:
      return null;
    case 1:
      return rand() < 0.5;
    case 2:
      return pick([0, -1, 1e308, -0, 2 ** 53 + 1, 3.14, 1e-300]);
    case 3:
      return pick(["", "x", "\u0000", "💥", "a".repeat(int(5000)), "\ud800", "/", "../../etc/passwd", "spn_x"]);
    case 4:
      return bytes(int(20)).toString("latin1");
    case 5:
      return pick(["true", "echo hi", "agent", "/tmp"]);
    case 6:
      return Array.from({ length: int(5) }, () => randomJson(depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = int(5); i > 0; i--) o[pick(["cmd", "argv", "cwd", "env", "pty", "agent_id", "budget", "isolated", "world", "stream", "stdin_b64", "scopes", "type", "x", "__proto__", "constructor"])] = randomJson(depth + 1);
      return o;
    }
  }
}

/** A valid execute made invalid on purpose (an unknown key is always added: strict schemas refuse it). */
function brokenExecute(i: number): unknown {
  const base: Record<string, unknown> = { cmd: "true", cwd: proj, agent_id: "fuzz" };
  for (let m = 1 + int(3); m > 0; m--) {
    const k = pick(["cmd", "argv", "cwd", "env", "pty", "agent_id", "budget", "isolated", "world", "stream", "stdin_b64"]);
    if (rand() < 0.3) delete base[k];
    else base[k] = randomJson(1);
  }
  base[`__fuzz_${i}`] = randomJson(2);
  return base;
}

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

function parseResponse(buf: Buffer): RawAnswer {
  const end = buf.indexOf("\r\n\r\n");
  if (end < 0) throw new Error(`no HTTP response: ${JSON.stringify(buf.toString("latin1").slice(0, 200))}`);
  const [statusLine, ...lines] = buf.subarray(0, end).toString("latin1").split("\r\n");
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const c = l.indexOf(":");
    headers[l.slice(0, c).toLowerCase()] = l.slice(c + 1).trim();
  }
  let body = buf.subarray(end + 4);
  if (headers["transfer-encoding"] === "chunked") {
    const parts: Buffer[] = [];
    let p = 0;
    for (;;) {
      const nl = body.indexOf("\r\n", p);
      const n = parseInt(body.subarray(p, nl).toString(), 16);
      if (!n) break;
      parts.push(body.subarray(nl + 2, nl + 2 + n));
      p = nl + 2 + n + 2;
    }
    body = Buffer.concat(parts);
  }
  return { status: Number(statusLine!.split(" ")[1]), headers, body };
}

/** One raw request on its own connection (Connection: close); resolves with the answer. */
function rawRequest(req: Buffer | string, timeoutMs = 30_000): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const s = createConnection(agent.socket);
    const chunks: Buffer[] = [];
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms to ${JSON.stringify(req.toString().slice(0, 120))}`));
    }, timeoutMs);
    s.on("data", (c: Buffer) => chunks.push(c));
    s.on("error", () => {});
    s.on("close", () => {
      clearTimeout(t);
      try {
        resolve(parseResponse(Buffer.concat(chunks)));
      } catch (e) {
        reject(e);
      }
    });
    s.write(req);
  });
}

function httpReq(method: string, path: string | Buffer, body?: Buffer | string, headers: Record<string, string> = {}): Buffer {
  const b = body === undefined ? undefined : Buffer.from(body);
  const head = [
    Buffer.from(`${method} `),
    Buffer.from(path),
    Buffer.from(
      ` HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n${Object.entries({ ...(b ? { "content-type": "application/json", "content-length": String(b.length) } : {}), ...headers })
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join("")}\r\n`,
    ),
  ];
  return Buffer.concat(b ? [...head, b] : head);
}

const ROUTES = ["/v1/execute", "/v1/request_scopes", "/v1/request_scopes/approve"];
const HUGE = Buffer.alloc(9 * 1024 * 1024, 0x61);

/** The i-th fuzz request. */
function nth(i: number): Buffer | string {
  switch (i % 12) {
    case 0:
      return httpReq("POST", "/v1/execute", bytes(int(300)));
    case 1:
    case 2:
      return httpReq("POST", "/v1/execute", JSON.stringify(brokenExecute(i)));
    case 3:
      return httpReq("POST", pick(ROUTES), JSON.stringify({ ...(randomJson() as object), __fuzz: i }));
    case 4: // invalid UTF-8 inside otherwise JSON-looking bodies
      return httpReq("POST", pick(ROUTES), Buffer.concat([Buffer.from('{"cmd":"'), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from('","agent_id":"a"}')]));
    case 5: // unknown routes, odd paths
      return httpReq(pick(["GET", "POST", "DELETE", "PATCH", "OPTIONS", "PUT"]), pick([`/v1/${bytes(4).toString("hex")}`, "/", "/v2/execute", `/v1/execute/${i}`, "/v1//execute", "/%ff%fe", `/${"a".repeat(4000)}`, "/v1/trace/%00", "/v1/worlds/../execute"]));
    case 6: // ids of the wrong shape or unknown
      return httpReq(pick(["GET", "DELETE"]), pick([`/v1/trace/${bytes(6).toString("hex")}`, `/v1/trace/spn_${Bun.randomUUIDv7()}`, `/v1/budgets/${bytes(3).toString("hex")}`, `/v1/worlds/wld_${Bun.randomUUIDv7()}`, "/v1/trace/%E2%82"]));
    case 7: // wrong methods on real routes
      return httpReq(pick(["PUT", "PATCH", "DELETE"]), pick(["/v1/execute", "/v1/capabilities", "/v1/request_scopes"]), "{}");
    case 8: // garbage on the wire
      return pick([
        "GARBAGE\r\n\r\n",
        Buffer.concat([Buffer.from("GET /v1/"), bytes(8), Buffer.from(" HTTP/1.1\r\nHost: x\r\n\r\n")]),
        "GET /v1/capabilities HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
        "POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        "POST /v1/execute HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "GET /v1/capabilities HTTP/9.9\r\n\r\n",
      ]);
    case 9: // wrong content types, JSON scalars, nesting bombs
      return httpReq("POST", pick(ROUTES), pick(["1", '"str"', "null", "[]", "[".repeat(5000) + "]".repeat(5000), '{"a":' + "[".repeat(2000) + "]".repeat(2000) + "}"]), { "content-type": pick(["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1"]) });
    case 10: // a lying content-length (more declared than sent; the socket closes early)
      return httpReq("POST", "/v1/execute", '{"cmd":', { "content-length": "7" });
    default:
      return httpReq("POST", "/v1/request_scopes", JSON.stringify({ agent_id: pick(["", " ", 5, null, "a"]), scopes: pick([[], ["x"], "net:a", [1], ["net: spaced"]]), extra: i }));
  }
}

function check(a: RawAnswer, what: string): void {
  if (a.status < 400 || a.status > 499) throw new Error(`${what}: status ${a.status} ${a.body.toString().slice(0, 200)}`);
  if (!(a.headers["content-type"] ?? "").startsWith("application/json")) throw new Error(`${what}: content-type ${a.headers["content-type"]}`);
  const body = JSON.parse(a.body.toString("utf8")) as { error?: { code?: unknown; message?: unknown } };
  if (typeof body.error?.code !== "string" || typeof body.error?.message !== "string") throw new Error(`${what}: not an error body: ${a.body.toString().slice(0, 200)}`);
}

test("10,000 malformed/random requests: every answer a JSON 4xx, agent still serving", async () => {
  const N = 10_000;
  let next = 0;
  const statuses = new Map<number, number>();
  const failures: string[] = [];
  const worker = async () => {
    while (next < N) {
      const i = next++;
      // a few huge payloads, not 800 (each is 9 MB)
      const req = i % 2000 === 999 ? httpReq("POST", "/v1/execute", HUGE) : nth(i);
      try {
        const a = await rawRequest(req);
        statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
        check(a, `request #${i}`);
      } catch (e) {
        failures.push(`#${i} ${JSON.stringify(req.toString("latin1").slice(0, 100))}: ${(e as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  console.log(`fuzz statuses: ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);
  expect(failures.slice(0, 10)).toEqual([]);
  expect([...statuses.values()].reduce((a, b) => a + b, 0)).toBe(N);
  expect(statuses.get(413)).toBeGreaterThanOrEqual(5); // the huge ones
  expect(agent.proc.exitCode).toBeNull();
  const ok = await http(agent.socket, "POST", "/v1/execute", { cmd: "echo alive", cwd: proj, agent_id: "after-fuzz" });
  expect(ok.status).toBe(200);
  expect(Buffer.from(ok.body.stdout_b64, "base64").toString()).toBe("alive\n");
}, 300_000);

test("random WebSocket first frames: error frame + 4xxx close, never a crash", async () => {
  const frames: (string | Buffer)[] = [];
  for (let i = 0; i < 200; i++) {
    frames.push(
      pick([
        () => bytes(int(64)),
        () => JSON.stringify(randomJson()),
        () => JSON.stringify({ type: "start", ...(randomJson() as object), __fuzz: i }),
        () => JSON.stringify({ type: pick(["attach", "resize", "signal", "eof", "detach", "nope"]), session_id: pick(["pty_x", `pty_${Bun.randomUUIDv7()}`]), agent_id: "a" }),
        () => Buffer.from([0xff, 0xfe, 0xfd]).toString("latin1"),
      ])(),
    );
  }
  const closes = await Promise.all(
    frames.map(async (f) => {
      const c = new StreamClient(agent.socket);
      await c.opened;
      if (typeof f === "string") c.ws.send(f);
      else c.send(f);
      const code = await c.closed;
      return { code, err: c.msg("error") };
    }),
  );
  for (const c of closes) {
    expect(c.code).toBeGreaterThanOrEqual(4400);
    expect(c.code).toBeLessThan(4500);
    expect(c.err?.type).toBe("error");
  }
  expect(agent.proc.exitCode).toBeNull();
});

test("slowloris: 64 stalled partial requests do not stop the agent from answering others", async () => {
  const stalled: Socket[] = [];
  for (let i = 0; i < 48; i++) {
    const s = createConnection(agent.socket);
    s.on("error", () => {});
    s.write("POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Le"); // headers never finish
    stalled.push(s);
  }
  for (let i = 0; i < 16; i++) {
    const s = createConnection(agent.socket);
    s.on("error", () => {});
    s.write('POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"cmd":'); // body never finishes
    stalled.push(s);
  }
  try {
    // Deadline: every one of these must be answered while the 64 connections hang.
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        i % 2 ? rawRequest(httpReq("GET", "/v1/capabilities"), 10_000) : rawRequest(httpReq("POST", "/v1/execute", JSON.stringify({ cmd: "true", cwd: proj, agent_id: "slow" })), 10_000),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
  } finally {
    for (const s of stalled) s.destroy();
  }
  expect(agent.proc.exitCode).toBeNull();
});

test("header deadline: a stalled request head gets a 408 JSON and is closed; long executes and streams are not cut", async () => {
  // Bun's node:http does not enforce headersTimeout (measured), src/api/deadline.ts does.
  const short = await startSourceAgent({ SUBSTRATE_HEADER_DEADLINE_MS: "400" });
  try {
    const partial = await new Promise<RawAnswer>((resolve, reject) => {
      const s = createConnection(short.socket);
      const chunks: Buffer[] = [];
      s.on("data", (c: Buffer) => chunks.push(c));
      s.on("error", reject);
      s.on("close", () => resolve(parseResponse(Buffer.concat(chunks))));
      s.write("POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Le");
    });
    expect(partial.status).toBe(408);
    expect(JSON.parse(partial.body.toString()).error.message).toContain("request head not received");
    // an execute that runs longer than the deadline is not cut
    const long = await http(short.socket, "POST", "/v1/execute", { cmd: "sleep 1; echo done", cwd: proj, agent_id: "long" });
    expect(long.status).toBe(200);
    expect(Buffer.from(long.body.stdout_b64, "base64").toString()).toBe("done\n");
    // nor is a WebSocket session
    const { openStream } = await import("./api-helpers.ts");
    const s = await openStream(short.socket, { cmd: "sleep 1; echo ws-done", cwd: proj, agent_id: "long" });
    expect((await s.exit()).code).toBe(0);
    expect(s.text()).toContain("ws-done");
  } finally {
    await short.stop();
  }
});

test("body deadline: a body that stops arriving gets a 400 JSON instead of holding the handler", async () => {
  const short = await startSourceAgent({ SUBSTRATE_BODY_DEADLINE_MS: "400" });
  try {
    const a = await new Promise<RawAnswer>((resolve, reject) => {
      const s = createConnection(short.socket);
      const chunks: Buffer[] = [];
      s.on("data", (c: Buffer) => {
        chunks.push(c);
        if (Buffer.concat(chunks).includes("}")) s.destroy(); // the JSON answer is complete
      });
      s.on("error", reject);
      s.on("close", () => resolve(parseResponse(Buffer.concat(chunks))));
      s.write('POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"cmd":');
    });
    expect(a.status).toBe(400);
    expect(JSON.parse(a.body.toString()).error.message).toContain("request body not received");
    expect((await http(short.socket, "GET", "/v1/capabilities")).status).toBe(200);
  } finally {
    await short.stop();
  }
});
