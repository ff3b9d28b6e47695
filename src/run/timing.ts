/**
 * Hot-path phase marks for bench/hotpath.ts: with SUBSTRATE_TIMING=1 the pipeline records
 * `performance.now()` (ms since the process started) at each phase boundary and prints one
 * line `substrate-timing: name=ms …` to stderr at the end. Off (one env read), it costs nothing.
 */
const on = process.env.SUBSTRATE_TIMING === "1";
const marks: [string, number][] = [];

export function mark(name: string): void {
  if (on) marks.push([name, performance.now()]);
}

export function dumpTiming(): void {
  if (!on || marks.length === 0) return;
  mark("end");
  // fd 2 directly: process.stderr costs ~12 ms in a compiled Bun, which would land in the figure
  (require("node:fs") as typeof import("node:fs")).writeSync(2, `substrate-timing: ${marks.map(([n, t]) => `${n}=${t.toFixed(2)}`).join(" ")}\n`);
  marks.length = 0;
}
