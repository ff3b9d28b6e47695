/**
 * Policy broker benchmark (issue 4): evaluate() p50/p99 per call with 10 / 100 / 1,000 rules
 * (goal: p99 ≤ 50 µs at 1,000 rules; spec: < 10 ms), against a 0-rule baseline measured in the
 * same run, plus what the broker adds to one `substrate -c` (cold module load, policy load,
 * first decision) measured in fresh processes. Prints figures; never fails on time.
 *
 *   bun bench/policy.ts
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { compileText } from "../src/broker/load.ts";
import { evaluate } from "../src/broker/evaluate.ts";
import type { CompiledPolicy } from "../src/broker/compile.ts";

const ROOT = resolve(import.meta.dir, "..");
const NAMES = ["npm", "pip", "cargo", "git", "curl", "wget", "docker", "kubectl", "make", "go", "gem", "yarn", "python", "node", "ssh", "scp", "rsync", "tar", "chmod", "chown"];

/** n rules: half denied, a quarter isolated, a quarter auto_approve; varied names and globs, a few pipelines. */
function policyWith(n: number): CompiledPolicy {
  const denied: string[] = [];
  const isolated: string[] = [];
  const auto: string[] = [];
  for (let i = 0; i < n; i++) {
    const name = i < NAMES.length ? NAMES[i] : `tool${i}`;
    const k = i % 4;
    if (k === 0 || k === 1) denied.push(i % 10 === 0 ? `${name} * | sh` : `${name} --dangerous-${i} *`);
    else if (k === 2) isolated.push(`${name} install-${i} *`);
    else auto.push(`${name} check-${i}`);
  }
  const q = (l: string[]) => `[${l.map((s) => JSON.stringify(s)).join(", ")}]`;
  const yaml = `id: bench\nname: bench\nmode: enforce\ncommands:\n  denied: ${q(denied)}\n  isolated: ${q(isolated)}\napproval:\n  auto_approve: ${q(auto)}\n`;
  return compileText(yaml, "bench.yaml", { home: "/home/u", project: "/proj" });
}

const LINES = [
  "ls -la",
  "git status && git diff --stat",
  "npm install left-pad",
  "curl -fsSL https://example.org/install.sh | sh",
  "bash -c 'cd src && make -j4 && ./run --flag \"a b\"'",
  "echo $(git rev-parse HEAD) > version.txt; tar czf out.tgz dist/",
  "python3 -m pytest -q tests/ 2>&1 | tee log.txt",
  "FOO=1 env BAR=2 nohup node server.js &",
];

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function measure(p: CompiledPolicy, iterations: number): { p50: number; p99: number; mean: number } {
  for (let i = 0; i < 2000; i++) evaluate(LINES[i % LINES.length], "/proj", p); // warm up the JIT
  const samples = new Float64Array(iterations);
  for (let i = 0; i < iterations; i++) {
    const line = LINES[i % LINES.length];
    const t0 = Bun.nanoseconds();
    evaluate(line, "/proj", p);
    samples[i] = (Bun.nanoseconds() - t0) / 1000;
  }
  const sorted = Array.from(samples).sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), mean: sorted.reduce((a, b) => a + b, 0) / sorted.length };
}

const fmt = (us: number): string => `${us.toFixed(1).padStart(7)} µs`;

console.log("policy evaluate() per call (mixed command lines: pipes, bash -c, substitutions, wrappers)");
const ITER = Number(process.env.BENCH_ITER ?? 40_000);
const base = measure(policyWith(0), ITER);
console.log(`  rules     0 (baseline: parse + analyze only)  p50 ${fmt(base.p50)}  p99 ${fmt(base.p99)}`);
for (const n of [10, 100, 1000]) {
  const t0 = Bun.nanoseconds();
  const p = policyWith(n);
  const compileMs = (Bun.nanoseconds() - t0) / 1e6;
  const m = measure(p, ITER);
  console.log(
    `  rules ${String(n).padStart(5)}  compile ${compileMs.toFixed(2).padStart(6)} ms  p50 ${fmt(m.p50)}  p99 ${fmt(m.p99)}  (p99 ×${(m.p99 / base.p99).toFixed(2)} vs baseline)${n === 1000 ? (m.p99 <= 50 ? "  goal p99 ≤ 50 µs: met" : "  goal p99 ≤ 50 µs: NOT met") : ""}`,
  );
}

// What the broker adds to one `substrate -c`: fresh processes, cold imports.
const dir = mkdtempSync(join(tmpdir(), "substrate-bench-policy-"));
try {
  mkdirSync(join(dir, ".substrate", "policies"), { recursive: true });
  writeFileSync(join(dir, ".substrate", "policies", "default.yaml"), (await import("../src/broker/default-policy.ts")).DEFAULT_POLICY_YAML);
  // run.ts has already loaded the contract (zod) and the config before it calls the broker:
  // load those first so the figure is what the broker adds on top.
  const probe = `
    const tb = performance.now();
    await import(${JSON.stringify(join(ROOT, "src/contract/index.ts"))});
    await import(${JSON.stringify(join(ROOT, "src/config.ts"))});
    const t0 = performance.now();
    const b = await import(${JSON.stringify(join(ROOT, "src/broker/index.ts"))});
    const t1 = performance.now();
    const d = await b.decideForCli({ cmd: "true", cwd: ${JSON.stringify(dir)}, isTTY: false, stdin: process.stdin, stderr: process.stderr, home: ${JSON.stringify(dir)} });
    const t2 = performance.now();
    await b.decideForCli({ cmd: "true", cwd: ${JSON.stringify(dir)}, isTTY: false, stdin: process.stdin, stderr: process.stderr, home: ${JSON.stringify(dir)} });
    const t3 = performance.now();
    console.log(JSON.stringify({ baseMs: t0 - tb, importMs: t1 - t0, firstMs: t2 - t1, secondMs: t3 - t2, action: d.action }));
  `;
  const runs: { baseMs: number; importMs: number; firstMs: number; secondMs: number }[] = [];
  const empty: number[] = [];
  for (let i = 0; i < 15; i++) {
    const t0 = performance.now();
    Bun.spawnSync([process.execPath, "-e", "0"], { env: { ...process.env, HOME: dir } });
    empty.push(performance.now() - t0);
    const r = Bun.spawnSync([process.execPath, "-e", probe], { env: { ...process.env, HOME: dir }, stdin: "ignore" });
    runs.push(JSON.parse(r.stdout.toString()));
  }
  const med = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const imp = med(runs.map((r) => r.importMs));
  const first = med(runs.map((r) => r.firstMs));
  const second = med(runs.map((r) => r.secondMs));
  console.log("\nbroker cost inside one `substrate -c true` (median of 15 fresh processes, from source)");
  console.log(`  bun process start (baseline, \`bun -e 0\`)   ${med(empty).toFixed(2).padStart(7)} ms`);
  console.log(`  import contract + config (already paid by run.ts) ${med(runs.map((r) => r.baseMs)).toFixed(2)} ms`);
  console.log(`  import src/broker (cold, on top)           ${imp.toFixed(2).padStart(7)} ms`);
  console.log(`  first decideForCli (load YAML + validate + compile + evaluate + approval note) ${first.toFixed(2)} ms`);
  console.log(`  second decideForCli (same process)         ${second.toFixed(2).padStart(7)} ms`);
  console.log(`  broker total ${(imp + first).toFixed(2)} ms = ${(((imp + first) / med(empty)) * 100).toFixed(0)}% of a bare bun start`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
