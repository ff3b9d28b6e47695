/**
 * Issue 18.4: back-pressure on the NDJSON execute stream (POST /v1/execute, `stream: true`).
 * An HTTP client that stops reading makes the response stop pulling; once 1 MiB of NDJSON
 * waits, the agent stops reading the command's ctl connection (src/api/router.ts → sink.flow →
 * WorldProcess.pause), the spawner stops reading the command's pipe, and the command blocks in
 * write(2). Once the client reads again, every byte arrives, in order, then the result.
 *
 * The client is a raw Unix socket it simply pauses (the kernel's receive buffer fills). The
 * command writes `yes` then `seq` as fast as it can; the checks are the agent's RSS (sampled
 * from /proc) against a fixed cap, that the command is still running at the end of the pause
 * (blocked, not finished into a buffer), and the bytes (pattern, order, count). No wall-clock
 * assertions: the pauses are the scenario.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";
import { MiB, nonReadingClient, startProxyProcess } from "./backpressure-helpers.ts";

/** Fixed cap on the agent's RSS growth while its client reads nothing (without back-pressure: the whole output, base64). */
const RSS_CAP = 64 * MiB;

let agent: TestAgent;
let proj: string;
beforeAll(async () => {
  agent = await startAgent();
  proj = tempProject();
  // Warm the world first, so the baseline includes it.
  await agent.client.execute({ cmd: "true", cwd: proj, agent_id: "bp-ndjson", world: { project_dir: proj } });
});
afterAll(async () => {
  await agent.stop();
  rmSync(proj, { recursive: true, force: true });
});

const run = (o: { yesBytes: number; seqN: number; stderrSeq?: number; pauseMs: number; mark: string }) =>
  nonReadingClient({ mode: "ndjson", socket: agent.socket, agentPid: agent.pid, proj, agentId: "bp-ndjson", ...o });

test("NDJSON execute: a client that reads nothing for 30 s of `yes` keeps the agent's RSS under a cap and loses nothing once it reads", async () => {
  const r = await run({ yesBytes: 200 * MiB, seqN: 1_000_000, pauseMs: 30_000, mark: "bp-ndjson-30s-7391" });
  console.log(`NDJSON execute: agent RSS growth while the client read nothing for 30 s: peak ${(r.agentPeak / MiB).toFixed(1)} MiB (cap ${RSS_CAP / MiB} MiB); ${r.stdout.bytes} bytes delivered`);
  expect(r.error).toBeUndefined();
  expect(r.status).toBe(200);
  expect(r.stillRunning).toBe(true); // blocked by back-pressure, not finished into a buffer
  expect(r.agentPeak).toBeLessThan(RSS_CAP);
  expect(r.exit).toBe(0);
  expect({ firstBad: r.stdout.firstBad, bytes: r.stdout.bytes }).toEqual({ firstBad: undefined, bytes: r.stdout.expectedBytes });
  expect(r.stdout.complete).toBe(true);
}, 240_000);

test("NDJSON execute: stdout and stderr both held back by a non-reading client arrive complete and in order", async () => {
  const r = await run({ yesBytes: 8 * MiB, seqN: 3_000_000, stderrSeq: 2_000_000, pauseMs: 5_000, mark: "bp-ndjson-5s-7392" });
  console.log(`NDJSON execute (stdout+stderr, 5 s): agent peak ${(r.agentPeak / MiB).toFixed(1)} MiB; ${r.stdout.bytes} + ${r.stderr.bytes} bytes delivered`);
  expect(r.error).toBeUndefined();
  expect(r.stillRunning).toBe(true);
  expect(r.agentPeak).toBeLessThan(RSS_CAP);
  expect(r.exit).toBe(0);
  expect(r.stdout.complete).toBe(true);
  expect(r.stderr.complete).toBe(true);
}, 120_000);

test("NDJSON execute through `substrate proxy`: the proxy stops reading the agent while its client lags; neither process buffers, nothing is lost", async () => {
  const proxy = await startProxyProcess(agent.socket, { cwd: proj, agent_id: "bp-ndjson" });
  try {
    const r = await nonReadingClient({ mode: "ndjson", socket: proxy.socket, agentPid: agent.pid, proxyPid: proxy.pid, proj, agentId: "bp-ndjson", yesBytes: 200 * MiB, seqN: 1_000_000, pauseMs: 10_000, mark: "bp-ndjson-proxy-7396" });
    console.log(`NDJSON execute via proxy (10 s): agent peak ${(r.agentPeak / MiB).toFixed(1)} MiB, proxy peak ${(r.proxyPeak / MiB).toFixed(1)} MiB; ${r.stdout.bytes} bytes delivered`);
    expect(r.error).toBeUndefined();
    expect(r.stillRunning).toBe(true);
    expect(r.agentPeak).toBeLessThan(RSS_CAP);
    expect(r.proxyPeak).toBeLessThan(RSS_CAP);
    expect(r.exit).toBe(0);
    expect(r.stdout.complete).toBe(true);
  } finally {
    await proxy.stop();
  }
}, 180_000);
