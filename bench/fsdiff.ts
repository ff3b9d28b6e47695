/**
 * fs diff speed: an overlay upper dir holding 100k new files (1000 dirs x 100 files, written
 * through a real kernel overlay in a private mount namespace), diffed with overlayDiff
 * (truncated → includes the tree hash, which reads every file) and with the walk alone
 * (collectChanges), against two baselines measured in the same run: `find <upper>` (a C walk,
 * process start included) and a bare in-process readdir walk. Goal (issue 3): ≤ 1 s.
 * Prints figures, never fails on time.
 *
 *   node_modules/.bin/bun bench/fsdiff.ts [files=100000]
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { discardOverlay } from "../agent/world/apply.ts";
import { collectChanges, overlayDiff } from "../agent/world/fsdiff.ts";
import { prepareOverlayDirs } from "../agent/world/overlay.ts";
import { runInPrivateMountNs } from "../src/sys/unshare.ts";

const FILES = Number(process.argv[2] ?? 100_000);
const PER_DIR = 100;
const RUNS = 5;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

/** Wall and CPU time (ms, medians). CPU time (user + sys) is the figure a loaded machine distorts least. */
interface Timing {
  wall: number;
  cpu: number;
}
let childCpuMs = 0; // CPU of spawned baselines (find), added by the measured function
async function time(fn: () => unknown | Promise<unknown>): Promise<Timing> {
  await fn(); // warm-up (page cache, JIT)
  const walls: number[] = [];
  const cpus: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    childCpuMs = 0;
    const c = process.cpuUsage();
    const t = performance.now();
    await fn();
    walls.push(performance.now() - t);
    const d = process.cpuUsage(c);
    cpus.push((d.user + d.system) / 1000 + childCpuMs);
  }
  return { wall: median(walls), cpu: median(cpus) };
}

const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const tmp = mkdtempSync("/var/tmp/substrate-bench-fsdiff-");
try {
  const project = join(tmp, "project");
  mkdirSync(project);
  writeFileSync(join(project, "package.json"), "{}\n");
  const dirs = prepareOverlayDirs("wld_bench", join(tmp, "overlay"));
  const merged = join(dirs.dir, "merged");
  mkdirSync(merged);

  // Fill the upper dir THROUGH the overlay (xattrs and layout exactly as a world leaves them).
  const fill = `
    const { mkdirSync, writeFileSync } = require("node:fs");
    const { mountOverlay, unmountOverlay } = require(${JSON.stringify(join(import.meta.dir, "../agent/world/overlay.ts"))});
    const [lower, upper, work, target, files, per] = process.argv.slice(2);
    mountOverlay({ lower, upper, work, target, strategy: "overlay" });
    for (let i = 0; i < Number(files); i++) {
      const d = target + "/node_modules/pkg" + Math.floor(i / Number(per));
      if (i % Number(per) === 0) mkdirSync(d, { recursive: true });
      writeFileSync(d + "/f" + i + ".js", "module.exports = " + i + ";\\n");
    }
    writeFileSync(target + "/package.json", '{"dependencies":{}}\\n');
    unmountOverlay(target);
  `;
  const fillScript = join(tmp, "fill.cjs");
  writeFileSync(fillScript, fill);
  const t0 = performance.now();
  const r = await runInPrivateMountNs(
    [process.execPath, fillScript, project, dirs.upper, dirs.work, merged, String(FILES), String(PER_DIR)],
    { timeoutMs: 600_000 },
  );
  if (r.code !== 0) throw new Error(`fill failed: ${r.stderr}`);
  console.log(`setup: ${FILES} files written through a kernel overlay in ${(performance.now() - t0).toFixed(0)} ms`);

  const find = await time(() => {
    const p = Bun.spawnSync(["find", dirs.upper], { stdout: "pipe" });
    if (p.exitCode !== 0) throw new Error("find failed");
    childCpuMs = Number(p.resourceUsage?.cpuTime.total ?? 0n) / 1000;
  });
  const bare = await time(() => {
    const walk = (d: string): number => {
      let n = 0;
      for (const e of readdirSync(d, { withFileTypes: true })) n += e.isDirectory() ? walk(`${d}/${e.name}`) : 1;
      return n;
    };
    walk(dirs.upper);
  });
  const walkOnly = await time(() => collectChanges(dirs.upper, project));
  let summary = "";
  const full = await time(async () => {
    summary = (await overlayDiff(dirs.upper, project)).summary ?? "";
  });

  // An isolated `/bin/true` leaves an empty upper dir: the per-command diff floor.
  const empty = prepareOverlayDirs("wld_bench_empty", join(tmp, "overlay"));
  const emptyDiff = await time(() => overlayDiff(empty.upper, project));
  // The agent-side overlay bookkeeping of one isolated command (mount itself excluded).
  let k = 0;
  const cycle = await time(async () => {
    const d = prepareOverlayDirs(`wld_cycle_${k++}`, join(tmp, "overlay"));
    await overlayDiff(d.upper, project);
    await discardOverlay(d.dir, join(tmp, "overlay"));
  });

  const row = (name: string, t: Timing) =>
    console.log(
      `${name.padEnd(46)} wall ${t.wall.toFixed(1).padStart(8)} ms  cpu ${t.cpu.toFixed(1).padStart(8)} ms   ` +
        `cpu x${(t.cpu / find.cpu).toFixed(2)} find  x${(t.cpu / bare.cpu).toFixed(2)} bare walk`,
    );
  console.log(`\nfs diff of an upper dir with ${FILES} new files (median of ${RUNS}, warm cache) — ${summary}`);
  console.log(`load average at start: ${load}`);
  row("baseline: find <upper> (spawned)", find);
  row("baseline: bare readdir walk (in-process)", bare);
  row("collectChanges (walk + classify)", walkOnly);
  row("overlayDiff (truncate + tree hash, reads all)", full);
  row("overlayDiff of an empty upper dir (/bin/true)", emptyDiff);
  row("prepare dirs + empty diff + discard", cycle);
  if (FILES >= 100_000) {
    console.log(`goal (100k files) ≤ 1000 ms wall: ${full.wall <= 1000 ? "met" : "NOT met"} (${full.wall.toFixed(0)} ms wall, ${full.cpu.toFixed(0)} ms cpu)`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
