/**
 * Span graph speed on a graph of 100k spans (goal, issue 5 / spec "Graph queries < 100ms"):
 * each query (what-changed, who-wrote file, who-wrote dir, agent) p50/p99 over many runs, the
 * ingest rate (trace.jsonl → sqlite), appendSpan cost, and a baseline measured in the same
 * run: answering "who wrote this file?" by scanning trace.jsonl with readSpans (no graph).
 * Prints figures, never fails on time.
 *
 *   node_modules/.bin/bun bench/graph.ts [spans=100000]
 */
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { newSpanId } from "../src/contract/index.ts";
import { defaultPrivacy, SpanGraph } from "../src/graph/index.ts";
import { readSpans, TraceWriter } from "../src/trace/index.ts";

const N = Number(process.argv[2] ?? 100_000);
const AGENTS = ["human", "claude", "cursor", "qwen", "codex"];
const FILES_PER_SPAN = 3;
const FILE_POOL = 20_000;

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;
function bench(name: string, runs: number, fn: (i: number) => unknown): { p50: number; p99: number } {
  fn(0); // warm-up
  const xs: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    fn(i);
    xs.push(performance.now() - t);
  }
  const r = { p50: pct(xs, 0.5), p99: pct(xs, 0.99) };
  console.log(`${name.padEnd(34)} p50 ${r.p50.toFixed(3).padStart(9)} ms   p99 ${r.p99.toFixed(3).padStart(9)} ms`);
  return r;
}

const tmp = fs.mkdtempSync(join(tmpdir(), "substrate-bench-graph-"));
try {
  const tracePath = join(tmp, "trace.jsonl");
  const w = new TraceWriter({ path: tracePath, maxBytes: 2 ** 40 });
  const project = "/work/project";
  const ids: string[] = [];
  let parent: string | undefined;
  const tw = performance.now();
  for (let i = 0; i < N; i++) {
    const id = newSpanId();
    ids.push(id);
    const writes = Array.from({ length: FILES_PER_SPAN }, (_, k) => `src/m${(i * 7 + k * 13) % FILE_POOL}.ts`);
    w.write({
      ts: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(),
      event_type: "command_complete",
      session_id: `ses_${i % 50}`,
      span_id: id,
      ...(i % 10 !== 0 && parent ? { parent_span: parent } : {}),
      component: "world",
      agent_id: AGENTS[i % AGENTS.length],
      cwd: project,
      cmd: `npm run task-${i}`,
      exit: i % 17 === 0 ? 1 : 0,
      fs_diff: { writes, mods: [`lib/shared${i % 100}.ts`], deletes: [] },
    });
    if (i % 10 === 0) parent = id;
  }
  const writeMs = performance.now() - tw;
  const traceBytes = fs.statSync(tracePath).size;
  console.log(`spans ${N}, trace.jsonl ${(traceBytes / 1e6).toFixed(1)} MB`);
  console.log(`appendSpan (validate+redact+write)  ${((writeMs / N) * 1000).toFixed(1)} µs/span`);

  const g = new SpanGraph(join(tmp, "graph"), defaultPrivacy(), "/home/nobody");
  const ti = performance.now();
  const st = g.sync(tracePath);
  const ingestMs = performance.now() - ti;
  console.log(`ingest (sync from JSONL)            ${(ingestMs / 1000).toFixed(2)} s, ${Math.round(st.spans / (ingestMs / 1000))} spans/s`);
  const tn = performance.now();
  g.sync(tracePath);
  console.log(`sync with nothing new               ${(performance.now() - tn).toFixed(3)} ms`);
  console.log(`graph ${JSON.stringify(g.counts())}`);
  console.log(`db size ${(fs.readdirSync(join(tmp, "graph")).reduce((a, f) => a + fs.statSync(join(tmp, "graph", f)).size, 0) / 1e6).toFixed(1)} MB`);
  console.log("");

  const pick = (i: number) => ids[(i * 7919) % ids.length]!;
  const r1 = bench("what-changed <span> (+children)", 500, (i) => g.whatChanged(pick(i)));
  const r2 = bench("who-wrote <file>", 500, (i) => g.whoWrote(`${project}/src/m${(i * 31) % FILE_POOL}.ts`));
  const r3 = bench("who-wrote <dir> (limit 100)", 200, () => g.whoWrote(`${project}/lib`));
  const r4 = bench("agent <id> (summary, top files)", 50, (i) => g.agent(AGENTS[i % AGENTS.length]!));
  g.close();

  // Baseline in the same run: the same who-wrote question answered without the graph.
  const target = `src/m${FILE_POOL - 1}.ts`;
  const tb = performance.now();
  const hits = (await readSpans({ path: tracePath })).filter((s) => s.fs_diff?.writes.includes(target));
  const scanMs = performance.now() - tb;
  console.log(`${"baseline: who-wrote by JSONL scan".padEnd(34)} ${scanMs.toFixed(1).padStart(9)} ms (${hits.length} hits)`);
  console.log("");
  const goal = 100;
  for (const [n, r] of [["what-changed", r1], ["who-wrote file", r2], ["who-wrote dir", r3], ["agent", r4]] as const)
    console.log(`${n.padEnd(16)} p99 ${r.p99.toFixed(2)} ms = ${(r.p99 / goal).toFixed(3)} x goal (100 ms); JSONL scan / p50 = ${(scanMs / r.p50).toFixed(0)}x`);
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
