/**
 * Issue 18.4: back-pressure. A `/v1/stream` client that stops reading must not make the agent
 * buffer the command's output without bound: the agent pauses the command's ctl connection,
 * the spawner stops reading the command's pipe, and the command blocks in write(2) — as a
 * writer to a stopped terminal does. Once the client reads again, nothing is lost.
 *
 * The client here (a raw WebSocket, tests/integration/backpressure-helpers.ts) stops reading
 * its socket (the kernel's receive buffer fills) for 30 s while `yes` writes as fast as it can;
 * the agent's and the world spawner's RSS (sampled from /proc) stay under a fixed cap and the
 * command is still running (blocked, not finished into a buffer) at the end of the pause; then
 * every one of the 200 MiB arrives, in order, then a `seq`, then the exit frame after them.
 * No wall-clock assertions: the 30 s are the scenario, the checks are bytes and RSS.
 * (The NDJSON execute and PTY sessions: backpressure-execute.test.ts, backpressure-pty.test.ts.)
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";
import { descendantsMatching, MiB, nonReadingClient, startProxyProcess } from "./backpressure-helpers.ts";

/** Fixed cap on the RSS growth while the client reads nothing (without back-pressure: the whole output). */
const RSS_CAP = 64 * MiB;

let agent: TestAgent;
let proj: string;
let spawner: number;
beforeAll(async () => {
  agent = await startAgent();
  proj = tempProject();
  // Warm the world first, so the baselines include it.
  await agent.client.execute({ cmd: "true", cwd: proj, agent_id: "bp", world: { project_dir: proj } });
  spawner = descendantsMatching(agent.pid, "__world-serve")[0]!;
});
afterAll(async () => {
  await agent.stop();
  rmSync(proj, { recursive: true, force: true });
});

test("a client that reads nothing for 30 s of `yes` keeps the agent's RSS under a cap and loses nothing once it reads", async () => {
  const r = await nonReadingClient({ mode: "stream", socket: agent.socket, agentPid: agent.pid, spawnerPid: spawner, proj, agentId: "bp", yesBytes: 200 * MiB, seqN: 1_000_000, pauseMs: 30_000, mark: "bp-stream-30s-7395" });
  console.log(
    `stream (pipes): RSS growth while the client read nothing for 30 s: agent peak ${(r.agentPeak / MiB).toFixed(1)} MiB, spawner peak ${(r.spawnerPeak / MiB).toFixed(1)} MiB (cap ${RSS_CAP / MiB} MiB); ${r.stdout.bytes} bytes delivered`,
  );
  expect(r.error).toBeUndefined();
  expect(r.stillRunning).toBe(true); // blocked by back-pressure, not finished into a buffer
  expect(r.agentPeak).toBeLessThan(RSS_CAP);
  expect(r.spawnerPeak).toBeLessThan(RSS_CAP);
  expect(r.exit).toBe(0);
  expect({ firstBad: r.stdout.firstBad, bytes: r.stdout.bytes }).toEqual({ firstBad: undefined, bytes: r.stdout.expectedBytes });
  expect(r.stdout.complete).toBe(true);
}, 240_000);

test("through `substrate proxy` (pipes and PTY): the proxy stops reading the agent while its client lags; nothing buffers, nothing is lost", async () => {
  const proxy = await startProxyProcess(agent.socket, { cwd: proj, agent_id: "bp" });
  try {
    for (const mode of ["stream", "pty"] as const) {
      const r = await nonReadingClient({ mode, socket: proxy.socket, agentPid: agent.pid, spawnerPid: spawner, proxyPid: proxy.pid, proj, agentId: "bp", yesBytes: 100 * MiB, seqN: 1_000_000, pauseMs: 10_000, mark: `bp-proxy-${mode}-7397` });
      console.log(`${mode} via proxy (10 s): agent peak ${(r.agentPeak / MiB).toFixed(1)} MiB, spawner ${(r.spawnerPeak / MiB).toFixed(1)} MiB, proxy ${(r.proxyPeak / MiB).toFixed(1)} MiB; ${r.stdout.bytes} bytes delivered`);
      expect(r.error).toBeUndefined();
      expect(r.stillRunning).toBe(true);
      expect(Math.max(r.agentPeak, r.spawnerPeak, r.proxyPeak)).toBeLessThan(RSS_CAP);
      expect(r.exit).toBe(mode === "pty" ? 3 : 0);
      expect(r.stdout.complete).toBe(true);
    }
  } finally {
    await proxy.stop();
  }
}, 240_000);
