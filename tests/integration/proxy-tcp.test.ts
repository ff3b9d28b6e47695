/**
 * The proxy forwards to an agent reachable only over loopback TCP (the Lima backend's ssh-tcp
 * transport hands out "127.0.0.1:PORT"): executes and the WebSocket stream both work. A socat
 * bridge stands in for the ssh forward.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { AgentClient } from "../../src/api/client.ts";
import { b64, eventually, hostArgv, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

let agent: TestAgent;
let bridge: ReturnType<typeof Bun.spawn>;
let proxy: ReturnType<typeof Bun.spawn>;
let dir: string;
let proj: string;
const port = 20000 + Math.floor(Math.random() * 20000);

beforeAll(async () => {
  agent = await startAgent();
  proj = tempProject();
  dir = mkdtempSync(join(tmpdir(), "substrate-proxy-tcp-"));
  bridge = Bun.spawn(["socat", `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, `UNIX-CONNECT:${agent.socket}`], { stderr: "ignore" });
  proxy = Bun.spawn([...hostArgv(), "proxy", "--socket", join(dir, "proxy.sock"), "--agent-socket", `127.0.0.1:${port}`, "--audit", "off", "--no-policy"], {
    env: { ...process.env, HOME: dir, SUBSTRATE_TRACE: join(dir, "trace.jsonl") },
    stdout: "ignore",
    stderr: "pipe",
  });
  await eventually(() => new AgentClient(join(dir, "proxy.sock")).capabilities(1000));
}, 60_000);

afterAll(async () => {
  proxy?.kill("SIGTERM");
  await proxy?.exited;
  bridge?.kill("SIGTERM");
  await bridge?.exited;
  await agent?.stop();
  rmSync(dir, { recursive: true, force: true });
  rmSync(proj, { recursive: true, force: true });
});

test("execute through the proxy to a TCP agent address", async () => {
  const r = await new AgentClient(join(dir, "proxy.sock")).execute({ cmd: "echo via-tcp", cwd: proj, agent_id: "tcp" });
  expect(b64(r.stdout_b64)).toBe("via-tcp\n");
});

test("the WebSocket stream through the proxy to a TCP agent address", async () => {
  const ws = new WebSocket(`ws+unix://${join(dir, "proxy.sock")}:/v1/stream`);
  let out = "";
  const exit = await new Promise<number>((resolve, reject) => {
    ws.on("open", () => ws.send(JSON.stringify({ type: "start", cmd: "echo streamed", cwd: proj, agent_id: "tcp", pty: false })));
    ws.on("message", (d, binary) => {
      if (binary) out += Buffer.from(d as Buffer).toString();
      else {
        const m = JSON.parse(String(d));
        if (m.type === "exit") resolve(m.code);
        if (m.type === "error") reject(new Error(m.message));
      }
    });
    ws.on("error", reject);
  });
  ws.close();
  expect(exit).toBe(0);
  expect(out).toContain("streamed");
});
