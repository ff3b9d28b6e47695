/**
 * Linux lifecycle commands (issue 10), manual mode on a private socket, with the compiled
 * host binary when built (what users run), else the source: `world warm` (cold: no agent;
 * no-op: agent running), `world status`, `world verify`, `world stop`. Baseline measured in
 * the same run: `substrate --version` (process start + CLI dispatch). Never fails on time.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { figure, measure, report } from "./_stats.ts";

const ROOT = resolve(import.meta.dir, "..");
const BIN = join(ROOT, "dist", `substrate-linux-${process.arch === "arm64" ? "arm64" : "x64"}`);
const CLI = existsSync(BIN) ? [BIN] : [process.execPath, join(ROOT, "src/main.ts")];
const dir = mkdtempSync(join(tmpdir(), "substrate-bench-lc-"));
const env = { PATH: process.env.PATH!, HOME: join(dir, "home"), SUBSTRATE_WORLD_SOCKET: join(dir, "agent.sock"), SUBSTRATE_TRACE: join(dir, "trace.jsonl") };

function run(...args: string[]): void {
  const p = Bun.spawnSync([...CLI, ...args], { env, cwd: dir, stdout: "ignore", stderr: "pipe" });
  if (p.exitCode !== 0 && !(args[1] === "status")) throw new Error(`${args.join(" ")}: exit ${p.exitCode}: ${p.stderr.toString()}`);
}

const N = Number(process.env.LIFECYCLE_N ?? 10);
try {
  console.log(`# substrate ${existsSync(BIN) ? "compiled" : "from source"}, manual mode on ${env.SUBSTRATE_WORLD_SOCKET}`);
  const base = figure("substrate --version (baseline)", await measure(N, () => run("--version"), 2));
  report(base);
  const rel = (name: string, samples: number[]) => {
    const f = figure(name, samples);
    report({ ...f, baseline: "substrate --version", ratio: f.median_ms / base.median_ms });
  };
  // cold = start + wait for /v1/capabilities; each sample stops the agent afterwards (untimed).
  const cold: number[] = [];
  for (let i = 0; i < N; i++) {
    const t = performance.now();
    run("world", "warm");
    cold.push(performance.now() - t);
    run("world", "stop");
  }
  rel("world warm (cold: starts the agent)", cold.sort((a, b) => a - b));
  run("world", "warm");
  rel("world warm (no-op: agent running)", await measure(N, () => run("world", "warm"), 1));
  rel("world status", await measure(N, () => run("world", "status"), 1));
  rel("world verify (2 fresh worlds, 12 checks)", await measure(Math.max(3, Math.floor(N / 2)), () => run("world", "verify"), 1));
  const stop: number[] = [];
  for (let i = 0; i < N; i++) {
    run("world", "warm");
    const t = performance.now();
    run("world", "stop");
    stop.push(performance.now() - t);
  }
  rel("world stop (SIGTERM, wait for exit)", stop.sort((a, b) => a - b));
} finally {
  Bun.spawnSync([...CLI, "world", "stop"], { env, stdout: "ignore", stderr: "ignore" });
  rmSync(dir, { recursive: true, force: true });
}
