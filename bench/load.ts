#!/usr/bin/env bun
/**
 * Issue 18 figures: the 64 × 100 load (64 concurrent clients × 100 executes, 8 agent ids =
 * 8 session worlds) against one world agent, without faults and with worlds killed at random
 * (every BENCH_KILL_MS, alternately SIGKILL of a spawner and DELETE through the API;
 * bench/_load-driver.ts). Prints exec/s, p50/p99 latency and the answer classes; the baseline
 * is the same run's fault-free load (and a bare `Bun.spawn('/bin/true')` for scale). Never
 * fails on time; exits 1 only when a request got no answer (no result and no JSON error).
 *
 *   bun bench/load.ts   (as root; BENCH_CLIENTS=64 BENCH_PER=100 BENCH_AGENTS=8 BENCH_KILL_MS=250)
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { startAgent } from "../tests/helpers/agent.ts";
import { measure, percentile, report } from "./_stats.ts";
import { runLoad, type LoadResult } from "./_load-driver.ts";

const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 64);
const PER = Number(process.env.BENCH_PER ?? 100);
const AGENTS = Number(process.env.BENCH_AGENTS ?? 8);
const KILL_MS = Number(process.env.BENCH_KILL_MS ?? 250);

const dir = mkdtempSync(join(tmpdir(), "substrate-bench-load-"));
const proj = join(dir, "proj");
await Bun.$`mkdir -p ${proj}`;
const trace = join(dir, "trace.jsonl");

console.log(`# bench/load.ts — ${cpus().length} CPUs, load ${loadavg()[0]!.toFixed(1)}, ${CLIENTS} clients x ${PER} executes, ${AGENTS} agent ids, faults: a world killed every ${KILL_MS} ms`);
const bare = await measure(200, async () => void (await Bun.spawn(["/bin/true"]).exited));
console.log(`bare Bun.spawn(/bin/true): median ${percentile(bare, 50).toFixed(3)} ms`);

const agent = await startAgent({ env: { SUBSTRATE_TRACE: trace } });
const rssKb = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${agent.pid}/status`, "utf8"))?.[1] ?? 0);

function line(name: string, r: LoadResult, base?: LoadResult): void {
  const lat = r.answers.map((a) => a.ms).sort((a, b) => a - b);
  const goal = "every request a result or a JSON error (errors = 0 without faults)";
  report({
    name,
    median_ms: percentile(lat, 50),
    p99_ms: percentile(lat, 99),
    n: r.answers.length,
    ...(base ? { baseline: "fault-free load", ratio: r.execPerSec / base.execPerSec } : {}),
    goal,
  });
  const byCode = new Map<string, number>();
  for (const a of r.answers) if (a.kind === "json_error") byCode.set(a.code!, (byCode.get(a.code!) ?? 0) + 1);
  console.log(
    `  ${r.execPerSec.toFixed(1)} exec/s over ${(r.wallMs / 1000).toFixed(1)} s; results ${r.ok} (+${r.killed} killed with their world), JSON errors ${r.jsonErrors}` +
      `${byCode.size ? ` (${[...byCode].map(([c, n]) => `${c} ${n}`).join(", ")})` : ""}, unanswered ${r.failures.length}; ` +
      `kills ${r.kills.sigkill} SIGKILL + ${r.kills.delete} DELETE; worlds ${r.worldsSeen.length}; agent RSS ${(rssKb() / 1024).toFixed(0)} MiB`,
  );
  console.log(`BENCH ${JSON.stringify({ name: `${name} exec/s`, value: r.execPerSec, errors: r.jsonErrors, unanswered: r.failures.length })}`);
}

let failed = 0;
try {
  // warm the 8 session worlds (a world's start is not what this measures)
  await runLoad({ socket: agent.socket, projectDir: proj, clients: AGENTS, perClient: 1, agents: AGENTS, killEveryMs: 0 });
  const clean = await runLoad({ socket: agent.socket, projectDir: proj, clients: CLIENTS, perClient: PER, agents: AGENTS, killEveryMs: 0 });
  line(`load ${CLIENTS}x${PER}, no faults`, clean);
  const faults = await runLoad({ socket: agent.socket, projectDir: proj, clients: CLIENTS, perClient: PER, agents: AGENTS, killEveryMs: KILL_MS });
  line(`load ${CLIENTS}x${PER}, worlds killed every ${KILL_MS} ms`, faults, clean);
  failed = clean.failures.length + faults.failures.length + clean.jsonErrors;
  for (const f of [...clean.failures, ...faults.failures].slice(0, 5)) console.log(`  unanswered: ${f.kind} ${f.detail ?? ""}`);
} finally {
  await agent.stop();
  rmSync(dir, { recursive: true, force: true });
}
console.log(`# load at the end: ${loadavg()[0]!.toFixed(1)}`);
process.exit(failed ? 1 : 0);
