/**
 * Issue 18.4: back-pressure on a PTY stream session (`/v1/stream`, `pty: true`). A client that
 * stops reading makes the agent stop reading the command's ctl connection (agent/flow.ts
 * SendWindow); the spawner then stops the command's terminal (agent/world/ptyflow.ts: tcflow
 * TCOOFF on the slave, as a terminal's XOFF) and the command blocks in write(2). Once the
 * client reads again, output is started again and every byte arrives, in order.
 *
 * Bun's terminal keeps reading the master, so before the terminal was stopped a PTY's output
 * piled up in the spawner instead (counted against the world, not the agent): both the agent's
 * and the world spawner's RSS are sampled here, each against a fixed cap. While paused, a
 * resize still reaches the terminal (`stty size` at the end), and the exit status is the
 * command's. No wall-clock assertions: the pauses are the scenario.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readdirSync, rmSync } from "node:fs";
import { startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";
import { descendantsMatching, MiB, nonReadingClient, type NonReadingResult } from "./backpressure-helpers.ts";

/** Fixed cap on the RSS growth of the agent, and of the world's spawner, while the client reads nothing. */
const RSS_CAP = 64 * MiB;

let agent: TestAgent;
let proj: string;
let spawner: number;
let spawnerFds: number;
const fdsOf = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;
beforeAll(async () => {
  agent = await startAgent();
  proj = tempProject();
  // Warm the world first, so the baselines include it.
  await agent.client.execute({ cmd: "true", cwd: proj, agent_id: "bp-pty", world: { project_dir: proj } });
  const s = descendantsMatching(agent.pid, "__world-serve");
  expect(s.length).toBe(1);
  spawner = s[0]!;
  spawnerFds = fdsOf(spawner);
});
afterAll(async () => {
  await agent.stop();
  rmSync(proj, { recursive: true, force: true });
});

const run = (o: { yesBytes: number; seqN: number; stderrSeq?: number; pauseMs: number; mark: string }) =>
  nonReadingClient({ mode: "pty", socket: agent.socket, agentPid: agent.pid, spawnerPid: spawner, proj, agentId: "bp-pty", ...o });

function expectComplete(r: NonReadingResult) {
  expect(r.error).toBeUndefined();
  expect(r.stillRunning).toBe(true); // blocked on its stopped terminal, not finished into a buffer
  expect(r.agentPeak).toBeLessThan(RSS_CAP);
  expect(r.spawnerPeak).toBeLessThan(RSS_CAP);
  expect(r.exit).toBe(3);
  expect({ firstBad: r.stdout.firstBad, extra: r.stdout.extra }).toEqual({ firstBad: undefined, extra: ["43 132"] });
  expect(r.stdout.complete).toBe(true);
}

test("PTY stream: a client that reads nothing for 30 s of `yes` keeps the agent's and the spawner's RSS under a cap and loses nothing once it reads", async () => {
  const r = await run({ yesBytes: 200 * MiB, seqN: 1_000_000, pauseMs: 30_000, mark: "bp-pty-30s-7393" });
  console.log(
    `PTY stream: RSS growth while the client read nothing for 30 s: agent peak ${(r.agentPeak / MiB).toFixed(1)} MiB, spawner peak ${(r.spawnerPeak / MiB).toFixed(1)} MiB (cap ${RSS_CAP / MiB} MiB each); ${r.stdout.bytes} bytes delivered`,
  );
  expectComplete(r);
}, 240_000);

test("PTY stream: a short pause on a `seq` stream loses nothing, resize and exit status still work", async () => {
  const r = await run({ yesBytes: 0, seqN: 5_000_000, pauseMs: 5_000, mark: "bp-pty-5s-7394" });
  console.log(`PTY stream (seq, 5 s): agent peak ${(r.agentPeak / MiB).toFixed(1)} MiB, spawner peak ${(r.spawnerPeak / MiB).toFixed(1)} MiB; ${r.stdout.bytes} bytes delivered`);
  expectComplete(r);
}, 120_000);

test("PTY stream in an isolated world (its own spawner, the isolated hardening profile): paused too, nothing lost", async () => {
  const r = await nonReadingClient({ mode: "pty", socket: agent.socket, agentPid: agent.pid, proj, agentId: "bp-pty", yesBytes: 0, seqN: 5_000_000, pauseMs: 5_000, mark: "bp-pty-iso-7400", isolated: true });
  console.log(`PTY stream, isolated world (seq, 5 s): agent peak ${(r.agentPeak / MiB).toFixed(1)} MiB; ${r.stdout.bytes} bytes delivered`);
  expect(r.error).toBeUndefined();
  expect(r.stillRunning).toBe(true);
  expect(r.agentPeak).toBeLessThan(RSS_CAP);
  expect(r.exit).toBe(3);
  expect(r.stdout.extra).toEqual(["43 132"]);
  expect(r.stdout.complete).toBe(true);
}, 120_000);

test("PTY stream: the spawner holds no terminal fd after the paused sessions ended", async () => {
  // each session's master (and its dups) and the slave held while stopped are closed at its end
  let n = 0;
  for (let i = 0; i < 100 && (n = fdsOf(spawner)) !== spawnerFds; i++) await Bun.sleep(50);
  expect(n).toBe(spawnerFds);
});
