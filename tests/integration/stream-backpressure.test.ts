/**
 * Issue 18.4: back-pressure. A `/v1/stream` client that stops reading must not make the agent
 * buffer the command's output without bound: the agent pauses the command's ctl connection,
 * the spawner stops reading the command's pipe, and the command blocks in write(2) — as a
 * writer to a stopped terminal does. Once the client reads again, nothing is lost.
 *
 * The client here stops reading its socket (the kernel's receive buffer fills) for 30 s while
 * `yes` writes as fast as it can; the agent's RSS (sampled from /proc) stays under a fixed cap
 * and the command is still running (blocked, not finished into a buffer) at the end of the
 * pause; then every one of the 200 MiB arrives, in order, and the exit frame after them.
 * No wall-clock assertions: the 30 s are the scenario, the checks are bytes and RSS.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { randomBytes } from "node:crypto";
import { pidsMentioning, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

const TOTAL = 200 * 1024 * 1024;
const PAUSE_MS = 30_000;
/** Fixed cap on the agent's RSS growth while its client reads nothing (without back-pressure: the whole output). */
const RSS_CAP = 64 * 1024 * 1024;
const MARK = `${TOTAL + 7}`; // a unique number on the command line: the command is findable in /proc

let agent: TestAgent;
let proj: string;
beforeAll(async () => {
  agent = await startAgent();
  proj = tempProject();
});
afterAll(async () => {
  await agent.stop();
  rmSync(proj, { recursive: true, force: true });
});

const rssOf = (pid: number): number => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) * 1024;

test("a client that reads nothing for 30 s of `yes` keeps the agent's RSS under a cap and loses nothing once it reads", async () => {
  // Warm the world first, so the baseline includes it.
  await agent.client.execute({ cmd: "true", cwd: proj, agent_id: "bp", world: { project_dir: proj } });
  const baseline = rssOf(agent.pid);

  // A minimal WebSocket client on a raw socket, so that "not reading" is exactly that: the
  // socket is paused and the kernel's receive buffer fills (no library reading ahead).
  const ws = await rawWebSocket(agent.socket, "/v1/stream");
  let bytes = 0;
  let pattern = true; // "y\n" repeated: even offsets 'y', odd '\n'
  let exit: { code: number } | undefined;
  const done = new Promise<void>((resolve, reject) => {
    ws.onFrame = (opcode, buf) => {
      if (opcode === 1) {
        const m = JSON.parse(buf.toString("utf8"));
        if (m.type === "exit") {
          exit = m;
          resolve();
        }
        if (m.type === "error") reject(new Error(JSON.stringify(m)));
        return;
      }
      if (opcode !== 2) return;
      for (let i = 0; i < buf.length && pattern; i++) if (buf[i] !== ((bytes + i) % 2 === 0 ? 0x79 : 0x0a)) pattern = false;
      bytes += buf.length;
    };
    ws.sock.on("close", () => resolve());
  });
  ws.sendText(JSON.stringify({ type: "start", cmd: `yes | head -c ${TOTAL}; : ${MARK}`, cwd: proj, agent_id: "bp", pty: false, world: { project_dir: proj } }));
  // The client stops reading.
  ws.sock.pause();

  let peak = 0;
  const end = Date.now() + PAUSE_MS;
  while (Date.now() < end) {
    peak = Math.max(peak, rssOf(agent.pid) - baseline);
    await Bun.sleep(250);
  }
  const stillRunning = pidsMentioning(MARK).length > 0;
  ws.sock.resume();
  await done;
  ws.sock.destroy();

  console.log(`agent RSS growth while the client read nothing for ${PAUSE_MS / 1000} s: peak ${(peak / 2 ** 20).toFixed(1)} MiB (cap ${RSS_CAP / 2 ** 20} MiB); ${bytes} bytes delivered`);
  expect(stillRunning).toBe(true); // blocked by back-pressure, not finished into a buffer
  expect(peak).toBeLessThan(RSS_CAP);
  expect(exit?.code).toBe(0);
  expect(bytes).toBe(TOTAL);
  expect(pattern).toBe(true);
}, 180_000);

/** WebSocket over a unix socket, by hand (RFC 6455): masked text frames out, frames in. */
async function rawWebSocket(path: string, url: string) {
  const sock: Socket = connect(path);
  await new Promise<void>((resolve, reject) => {
    sock.once("connect", () => resolve());
    sock.once("error", reject);
  });
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
