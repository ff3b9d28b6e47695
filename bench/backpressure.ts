#!/usr/bin/env bun
/**
 * Issue 18.4 figures: the agent's (and the world spawner's) RSS growth while a client reads
 * nothing, for each way output leaves the agent — the WebSocket stream with pipes, the NDJSON
 * execute stream, and a PTY stream session. The command writes 200 MiB of `yes` then `seq 1
 * 1000000` as fast as it can; the client stops reading its socket for BENCH_BP_PAUSE_S seconds
 * (default 10; the tests use 30), then reads everything (checked: complete, in order).
 *
 * Same-run baseline: the same command with a client that reads all along (peak RSS growth over
 * the whole run: what moving the bytes at full speed costs anyway). Without back-pressure the
 * non-reading figure would be what the command wrote in the pause, up to the whole output
 * (207 MiB; more as base64 for NDJSON). Each run has a fresh agent: RSS does not shrink back
 * after a run, so runs sharing a process would hide each other's growth. Never fails on time.
 *
 * BENCH_BASELINE_AGENT=<agent binary> (e.g. built from the commit before issue 18.4's work) adds
 * that agent's non-reading figures in the same run.
 *
 * Run as root: `bun bench/backpressure.ts` (BENCH_BP_PAUSE_S, BENCH_BASELINE_AGENT).
 */
import { rmSync } from "node:fs";
import { startAgent, tempProject } from "../tests/helpers/agent.ts";
import { descendantsMatching, MiB, nonReadingClient, PatternCheck, rssOf } from "../tests/integration/backpressure-helpers.ts";

const PAUSE_S = Number(process.env.BENCH_BP_PAUSE_S ?? 10);
const YES = 200 * MiB;
const SEQ = 1_000_000;

/** One run on a fresh agent and world (RSS never shrinks back: runs must not share a process). */
async function one(mode: "stream" | "ndjson" | "pty", pauseMs: number, n: number, argv?: string[]) {
  const agent = await startAgent(argv ? { argv } : {});
  const proj = tempProject();
  try {
    await agent.client.execute({ cmd: "true", cwd: proj, agent_id: "bench-bp", world: { project_dir: proj } });
    const spawner = descendantsMatching(agent.pid, "__world-serve")[0];
    // Whole-run peaks (the reading baseline has no pause to sample in).
    const base = [rssOf(agent.pid), spawner ? rssOf(spawner) : 0];
    const peak = [0, 0];
    let on = true;
    const sampler = (async () => {
      while (on) {
        peak[0] = Math.max(peak[0]!, rssOf(agent.pid) - base[0]!);
        if (spawner) peak[1] = Math.max(peak[1]!, rssOf(spawner) - base[1]!);
        await Bun.sleep(100);
      }
    })();
    const r = await nonReadingClient({ mode, socket: agent.socket, agentPid: agent.pid, spawnerPid: spawner, proj, agentId: "bench-bp", yesBytes: YES, seqN: SEQ, pauseMs, mark: `bench-bp-${process.pid}-${n}` });
    on = false;
    await sampler;
    return { r, base, wholeAgent: peak[0]!, wholeSpawner: peak[1]! };
  } finally {
    await agent.stop();
    rmSync(proj, { recursive: true, force: true });
  }
}

const f = (b: number) => `${(b / MiB).toFixed(1)} MiB`;
console.log(`output per run ${(new PatternCheck(YES, SEQ).expectedBytes / MiB).toFixed(0)} MiB (${YES / MiB} MiB of yes, then seq 1 ${SEQ}); each run on a fresh agent and world`);
console.log("");
const BASE = process.env.BENCH_BASELINE_AGENT;
const f0 = (r: Awaited<ReturnType<typeof one>>) => `${f(r.r.agentPeak)} / ${f(r.r.spawnerPeak)}, ${r.r.stdout.complete ? "complete" : `${f(r.r.stdout.bytes)} delivered`}`;
console.log(`| path | agent RSS growth, client reads nothing for ${PAUSE_S} s | spawner RSS growth (same) | whole run incl. catching up (agent / spawner) | baseline: reading client, whole run (agent / spawner) | delivered afterwards |${BASE ? " baseline agent, not reading (agent / spawner) |" : ""}`);
console.log(`|---|---|---|---|---|---|${BASE ? "---|" : ""}`);
let n = 0;
for (const mode of ["stream", "ndjson", "pty"] as const) {
  const paused = await one(mode, PAUSE_S * 1000, n++);
  const reading = await one(mode, 0, n++);
  const ok = paused.r.stdout.complete && paused.r.stillRunning ? "all bytes, in order; the command was blocked" : `INCOMPLETE (complete=${paused.r.stdout.complete}, blocked=${paused.r.stillRunning})`;
  const name = mode === "stream" ? "/v1/stream, pipes" : mode === "ndjson" ? "POST /v1/execute stream:true (NDJSON)" : "/v1/stream, PTY";
  const before = BASE ? ` ${f0(await one(mode, PAUSE_S * 1000, n++, [BASE]))} |` : "";
  console.log(`| ${name} | ${f(paused.r.agentPeak)} | ${f(paused.r.spawnerPeak)} | ${f(paused.wholeAgent)} / ${f(paused.wholeSpawner)} | ${f(reading.wholeAgent)} / ${f(reading.wholeSpawner)} | ${ok} |${before}`);
}
console.log("");
console.log("Without back-pressure the agent (pipes, NDJSON) or the spawner (PTY) would hold what the command wrote during the pause, up to the whole output.");
