/**
 * What tracing costs a command: loading the trace module (cold, in a fresh process, against
 * a bare `bun -e ''` baseline measured in the same run), one CommandSpan start+complete pair,
 * appendSpan per line (small and 100-path fs_diff lines), with and without fsync, and
 * concurrent throughput with 8 writer processes. Prints figures, never fails on time.
 *
 *   node_modules/.bin/bun bench/trace.ts
 */
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { newSpanId } from "../src/contract/common.ts";
import { CommandSpan, TraceWriter } from "../src/trace/index.ts";

const ROOT = resolve(import.meta.dir, "..");
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const tmp = fs.mkdtempSync(join(tmpdir(), "substrate-bench-trace-"));

function spawnMs(code: string, runs = 15): number {
  const xs: number[] = [];
  for (let i = 0; i < runs + 1; i++) {
    const t = performance.now();
    Bun.spawnSync([process.execPath, "-e", code], { cwd: ROOT, stdout: "ignore", stderr: "inherit" });
    if (i > 0) xs.push(performance.now() - t);
  }
  return median(xs);
}

try {
  // `substrate -c` already loads the broker (and zod with it): what tracing adds is the
  // difference between the last two figures.
  const bare = spawnMs("0");
  const withTrace = spawnMs(`await import("./src/trace/index.ts")`);
  const broker = spawnMs(`await import("./src/broker/index.ts")`);
  const both = spawnMs(`await import("./src/broker/index.ts"); await import("./src/trace/index.ts")`);
  console.log(`process start (source, median): bare ${bare.toFixed(1)} ms; + trace module ${withTrace.toFixed(1)} ms`);
  console.log(`  -c path: broker ${broker.toFixed(1)} ms, broker + trace ${both.toFixed(1)} ms -> tracing adds ${(both - broker).toFixed(1)} ms`);

  const path = join(tmp, "t.jsonl");
  const small = () => ({
    ts: new Date().toISOString(),
    event_type: "command_complete" as const,
    session_id: "ses_b",
    span_id: newSpanId(),
    component: "shell" as const,
    cwd: "/p",
    cmd: "npm test --token=abcdef",
    exit: 0,
  });
  const big = () => ({ ...small(), fs_diff: { writes: Array.from({ length: 100 }, (_, i) => `node_modules/pkg${i}/index.js`), mods: [], deletes: [] } });
  for (const [name, mk, fsync] of [
    ["appendSpan small line", small, false],
    ["appendSpan 100-path fs_diff line", big, false],
    ["appendSpan small line, fsync", small, true],
  ] as const) {
    const w = new TraceWriter({ path, maxBytes: 2 ** 40, fsync });
    const n = fsync ? 300 : 5000;
    for (let i = 0; i < 50; i++) w.write(mk());
    const t = performance.now();
    for (let i = 0; i < n; i++) w.write(mk());
    console.log(`${name.padEnd(36)} ${(((performance.now() - t) / n) * 1000).toFixed(1).padStart(7)} µs/line`);
  }
  const xs: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const t = performance.now();
    const s = CommandSpan.start({ cmd: "make", cwd: "/p", env: process.env, component: "shell", policy_id: "default", policy_commit: "abc", world_image_version: "v", tracePath: path });
    s.complete({ exit: 0 });
    xs.push(performance.now() - t);
  }
  console.log(`${"CommandSpan start+complete (-c path)".padEnd(36)} ${(median(xs) * 1000).toFixed(1).padStart(7)} µs median`);

  const cpath = join(tmp, "c.jsonl");
  const proc = join(ROOT, "tests/unit/trace/fixtures/writer-proc.ts");
  const t = performance.now();
  const ps = Array.from({ length: 8 }, (_, i) => Bun.spawn([process.execPath, proc, "2000", `w${i}`, "0"], { env: { ...process.env, SUBSTRATE_TRACE: cpath } }));
  await Promise.all(ps.map((p) => p.exited));
  const ms = performance.now() - t;
  const lines = fs.readFileSync(cpath, "utf8").trim().split("\n").length;
  console.log(`8 writer processes x 2000 lines: ${lines} lines in ${ms.toFixed(0)} ms (${Math.round(lines / (ms / 1000))} lines/s incl. process start)`);
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
