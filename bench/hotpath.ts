#!/usr/bin/env bun
/**
 * The CLI hot path (issue 17): where `substrate -c true` spends its time, phase by phase, and
 * the figures against same-run baselines. Prints; never fails on time. Run as root.
 *
 * Baselines (this run): a Bun-compiled hello world (same Bun, same flags as the product),
 * the same hello world with the embedded zstd agent payload (does the payload cost startup?),
 * `bwrap --unshare-all --ro-bind / / true`.
 * Figures: `substrate --version`, `substrate --no-world -c true`, `substrate -c true` (warm
 * world; the fast path, src/cli/fast.ts) with its peak RSS and phases (fast = process start to
 * the fast path's dispatch, open = the agent's WebSocket, started = the agent's gate + world +
 * spawn, result = the command's run and its host span, end), and the same command through the
 * full pipeline (HOME ≠ the passwd home: the fast path steps aside) with its phases (pipeline =
 * runtime + main + cli/run loaded → loaded (pipeline modules) → config → policy → gate → world
 * → span (command_start) → result (the agent's result frame) → end (command_complete)).
 * Goals (printed, never asserted): -c true ≤ 2.0× bwrap, peak RSS ≤ 30 MB, --version ≤ 1.5× hello.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { selectionFileFor } from "../src/broker/load.ts";
import { join, resolve } from "node:path";
import { HOST_BIN, hostArgv, startAgent } from "../tests/helpers/agent.ts";
import { figure, measure, percentile, report } from "./_stats.ts";

const N = Number(process.env.BENCH_N ?? 30);
const ROOT = resolve(import.meta.dir, "..");
const work = mkdtempSync(join(tmpdir(), "substrate-hotpath-"));
const proj = join(work, "proj");
mkdirSync(join(proj, ".git"), { recursive: true });

interface Run {
  ms: number;
  err: string;
}
async function run(argv: string[], env: Record<string, string | undefined> = process.env): Promise<Run> {
  const t = performance.now();
  const p = Bun.spawn(argv, { cwd: proj, env, stdout: "ignore", stderr: "pipe" });
  const err = await new Response(p.stderr).text();
  await p.exited;
  return { ms: performance.now() - t, err };
}
async function sample(argv: string[], env?: Record<string, string | undefined>, n = N): Promise<Run[]> {
  for (let i = 0; i < 3; i++) await run(argv, env);
  const out: Run[] = [];
  for (let i = 0; i < n; i++) out.push(await run(argv, env));
  return out;
}
const ms = (rs: Run[]) => rs.map((r) => r.ms).sort((a, b) => a - b);
/**
 * Peak RSS (MiB, median of 5) from /usr/bin/time's %M (the kernel's ru_maxrss of the child):
 * Bun's own resourceUsage().maxRSS is not usable for this (it reported terabytes here).
 */
function peakRss(argv: string[], env: Record<string, string | undefined> = process.env): number {
  if (!existsSync("/usr/bin/time")) return NaN;
  const kb: number[] = [];
  for (let i = 0; i < 5; i++) {
    const r = Bun.spawnSync(["/usr/bin/time", "-f", "RSS=%M", ...argv], { cwd: proj, env, stdout: "ignore", stderr: "pipe" });
    const m = /RSS=(\d+)/.exec(r.stderr.toString());
    if (m) kb.push(Number(m[1]));
  }
  return percentile(kb.sort((a, b) => a - b), 50) / 1024;
}

function compile(name: string, src: string): string {
  const entry = join(work, `${name}.ts`);
  writeFileSync(entry, src);
  const out = join(work, name);
  const r = Bun.spawnSync([process.execPath, "build", "--compile", "--minify", "--bytecode", "--format=esm", "--outfile", out, entry], { cwd: work, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`bun build ${name}: ${r.stderr.toString()}`);
  return out;
}

try {
  const hello = compile("hello", 'console.log("hello");\n');
  const hr = await sample([hello]);
  const helloF = figure("Bun-compiled hello world", ms(hr));
  report(helloF);
  console.log(`  peak RSS ${peakRss([hello]).toFixed(1)} MiB`);

  const zst = join(ROOT, "dist", ".build", `substrate-world-agent-linux-${process.arch === "arm64" ? "arm64" : "x64"}.zst`);
  if (existsSync(zst)) {
    const payload = compile("hello-payload", `import z from ${JSON.stringify(zst)} with { type: "file" };\nif (process.argv[2] === "x") console.log(z);\nconsole.log("hello");\n`);
    const pr = await sample([payload]);
    const pf = figure("hello world + the embedded zstd agent payload", ms(pr), { baseline: "hello world", ratio: 0 });
    pf.ratio = pf.median_ms / helloF.median_ms;
    report(pf);
    console.log(`  payload: ${(Bun.file(zst).size / 2 ** 20).toFixed(1)} MiB zstd; startup ${(pf.median_ms - helloF.median_ms).toFixed(2)} ms over hello, peak RSS ${peakRss([payload]).toFixed(1)} MiB`);
  } else console.log("(no dist/.build/*.zst: run make build-native to measure the payload's startup cost)");

  let bwrapF;
  if (Bun.which("bwrap")) {
    bwrapF = figure("bwrap --unshare-all --ro-bind / / true", ms(await sample(["bwrap", "--unshare-all", "--ro-bind", "/", "/", "/bin/true"])));
    report(bwrapF);
    // what `substrate -c true` runs in the world is `bash -c true` (the bash entry): bash's own start, for scale
    const bb = figure("bwrap --unshare-all --ro-bind / / bash -c true", ms(await sample(["bwrap", "--unshare-all", "--ro-bind", "/", "/", "/bin/bash", "-c", "true"])), { baseline: "bwrap", ratio: 0 });
    bb.ratio = bb.median_ms / bwrapF.median_ms;
    report(bb);
  }

  if (!existsSync(HOST_BIN)) console.log(`(no ${HOST_BIN}: figures below run from source)`);
  const cli = hostArgv();
  const vr = await sample([...cli, "--version"]);
  const vf = figure("substrate --version", ms(vr), { baseline: "hello world", ratio: 0, goal: "<= 1.5x a Bun-compiled hello world" });
  vf.ratio = vf.median_ms / helloF.median_ms;
  report(vf);
  console.log(`  peak RSS ${peakRss([...cli, "--version"]).toFixed(1)} MiB`);

  // The full pipeline: a HOME that is not the passwd home makes the fast path step aside
  // (src/cli/fast.ts: the agent reads the caller's policy from the passwd home).
  const env = { ...process.env, HOME: join(work, "home"), SUBSTRATE_TRACE: join(work, "trace.jsonl"), SUBSTRATE_TIMING: "1" };
  const nw = await sample([...cli, "--no-world", "-c", "true"], env);
  report(figure("substrate --no-world -c true", ms(nw), { baseline: "hello world", ratio: percentile(ms(nw), 50) / helloF.median_ms }));

  /** Per-phase breakdown: median of each mark's delta from the previous one. */
  const phases = (rs: Run[], total: number, label = "substrate-timing", what = "phase (median ms since the previous mark; the first = since process start):") => {
    const by = new Map<string, number[]>();
    for (const r of rs) {
      const m = new RegExp(`${label}: (.*)`).exec(r.err);
      if (!m) continue;
      let prev = 0;
      for (const kv of m[1]!.split(" ")) {
        const [k, v] = kv.split("=");
        const t = Number(v);
        if (!by.has(k!)) by.set(k!, []);
        by.get(k!)!.push(t - prev);
        prev = t;
      }
    }
    if (!by.size) return console.log(`  (no ${label} line: this binary predates it)`);
    console.log(`  ${what}`);
    for (const [k, v] of by) {
      const med = percentile(v.sort((a, b) => a - b), 50);
      console.log(`    ${k.padEnd(10)} ${med.toFixed(2).padStart(7)} ms  ${((med / total) * 100).toFixed(0).padStart(3)}%`);
    }
    console.log("  (the rest up to the wall time is process exit and spawn overhead)");
  };

  // The fast path runs as the passwd user: it records the bench project's policy selection in
  // that user's ~/.substrate/projects/ (as the pipeline would); removed again at the end.
  const uid = String(process.getuid?.() ?? 0);
  const realHome = readFileSync("/etc/passwd", "utf8").split("\n").map((l) => l.split(":")).find((f) => f[2] === uid)?.[5] ?? "/root";
  const record = selectionFileFor(realpathSync(proj), { home: realHome });
  const hadRecord = existsSync(record);
  const agent = await startAgent({ env: { SUBSTRATE_TIMING: "1" } });
  /** The agent's (and its policy helper's) phase lines since `from` (agent/timing.ts), as Runs. */
  const agentLines = (from: number, label: string): Run[] =>
    agent.stderr().slice(from).split("\n").filter((l) => l.includes(`${label}: `)).map((l) => ({ ms: 0, err: l.slice(l.indexOf(label)) }));
  try {
    const base = bwrapF ?? helloF;
    const fenv = { ...env, HOME: realHome, SUBSTRATE_WORLD_SOCKET: agent.socket };
    const from = agent.stderr().length;
    const cr = await sample([...cli, "-c", "true"], fenv);
    const agentRuns = agentLines(from, "substrate-agent-timing");
    const policydRuns = agentLines(from, "substrate-policyd-timing");
    const cf = figure("substrate -c true (warm world)", ms(cr), { baseline: bwrapF ? "bwrap" : "hello world", ratio: 0, goal: "<= 2.0x bwrap; peak RSS <= 30 MB" });
    cf.ratio = cf.median_ms / base.median_ms;
    report(cf);
    console.log(`  peak RSS ${peakRss([...cli, "-c", "true"], fenv).toFixed(1)} MiB (goal <= 30 MB)`);
    phases(cr, cf.median_ms);
    phases(agentRuns, cf.median_ms, "substrate-agent-timing", "agent side (agent/service.ts start(): ms since the previous mark; the first = the gate, via the caller's policy helper):");
    phases(policydRuns, cf.median_ms, "substrate-policyd-timing", "the caller's policy helper (agent/policyd.ts: the fast path's gate; ms since the request line arrived):");

    const pr = await sample([...cli, "-c", "echo hi | cat"], fenv);
    report(figure("substrate -c 'echo hi | cat' (warm world)", ms(pr), { baseline: bwrapF ? "bwrap" : "hello world", ratio: percentile(ms(pr), 50) / base.median_ms }));

    const wenv = { ...env, SUBSTRATE_WORLD_SOCKET: agent.socket };
    const fr = await sample([...cli, "-c", "true"], wenv);
    const ff = figure("substrate -c true (warm world, the full pipeline: no fast path)", ms(fr), { baseline: bwrapF ? "bwrap" : "hello world", ratio: 0 });
    ff.ratio = ff.median_ms / base.median_ms;
    report(ff);
    console.log(`  peak RSS ${peakRss([...cli, "-c", "true"], wenv).toFixed(1)} MiB`);
    phases(fr, ff.median_ms);
  } finally {
    await agent.stop();
    if (!hadRecord) rmSync(record, { force: true });
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
