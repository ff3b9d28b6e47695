#!/usr/bin/env bun
/**
 * `make bench`: runs every benchmark in bench/ (all *.ts but this file and `_*` helpers),
 * each in its own process with a timeout, measures the peer baselines in the same run —
 * bare spawn, Debian's bwrap, and @anthropic-ai/sandbox-runtime's `srt` — and writes
 * docs/PERFORMANCE.md: machine line, baselines, the issues' goals beside what was measured
 * (met or not), every BENCH figure with its ratios, and verbatim text of benches that print
 * no BENCH lines. Never fails on time; exits non-zero only if it cannot write the page.
 *
 *   bun bench/run.ts [--only exec,net] [--out FILE]
 *   env: BENCH_TIMEOUT_S (per bench, default 900), BASELINE_N (default 200), SRT_N (default 20),
 *        SRT_VERSION (default: the registry's latest)
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, release, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { figure, measure, type Figure } from "./_stats.ts";

const ROOT = resolve(import.meta.dir, "..");
const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const ONLY = opt("--only")?.split(",").map((s) => s.replace(/\.ts$/, ""));
const OUT = resolve(opt("--out") ?? join(ROOT, "docs/PERFORMANCE.md"));
const TIMEOUT_S = Number(process.env.BENCH_TIMEOUT_S ?? 900);
const BASELINE_N = Number(process.env.BASELINE_N ?? 200);
const SRT_N = Number(process.env.SRT_N ?? 20);
const log = (m: string) => process.stderr.write(`bench: ${m}\n`);
const sh = (argv: string[]) => {
  const r = Bun.spawnSync(argv, { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: r.stdout.toString().trim(), err: r.stderr.toString().trim() };
};

// ---- machine ---------------------------------------------------------------------------------
const startedAt = new Date();
const loadStart = loadavg();
const machine = {
  nproc: cpus().length,
  model: cpus()[0]?.model.trim() ?? "unknown",
  kernel: release(),
  os: sh(["sh", "-c", ". /etc/os-release && echo \"$PRETTY_NAME\""]).out || "unknown",
  memGB: Math.round(Number(sh(["sh", "-c", "awk '/MemTotal/ {print $2}' /proc/meminfo"]).out) / 1024 / 1024),
  bun: Bun.version,
  commit: sh(["git", "rev-parse", "--short=12", "HEAD"]).out,
  dirty: sh(["git", "status", "--porcelain", "--untracked-files=no"]).out !== "",
};
const fmtLoad = (l: number[]) => l.map((x) => x.toFixed(2)).join(" / ");
log(`${machine.nproc} × ${machine.model}, kernel ${machine.kernel}, load ${fmtLoad(loadStart)}`);

// ---- baselines (same run) --------------------------------------------------------------------
interface Baseline {
  key: "bare" | "bwrap" | "srt";
  label: string;
  command: string;
  fig?: Figure;
  note?: string;
}
const baselines: Baseline[] = [];

/** First call: with stderr captured, so a tool that cannot run here says why. */
async function spawnOk(argv: string[], env?: Record<string, string>): Promise<void> {
  const p = Bun.spawn(argv, { stdout: "ignore", stderr: "pipe", env: env ?? (process.env as Record<string, string>) });
  const code = await p.exited;
  if (code !== 0) throw new Error(`${argv.join(" ")} exited ${code}: ${(await new Response(p.stderr).text()).trim().slice(0, 400)}`);
}
/** Measured calls: no pipes (same as bench/exec.ts's bare spawn), still checked. */
async function spawnQuiet(argv: string[], env?: Record<string, string>): Promise<void> {
  const code = await Bun.spawn(argv, { stdout: "ignore", stderr: "ignore", env }).exited;
  if (code !== 0) throw new Error(`${argv.join(" ")} exited ${code}`);
}

async function baseline(b: Omit<Baseline, "fig">, n: number, argv: string[] | null, env?: Record<string, string>): Promise<void> {
  const entry: Baseline = { ...b };
  baselines.push(entry);
  if (!argv) return;
  try {
    await spawnOk(argv, env); // fail fast with the tool's own message
    entry.fig = figure(b.label, await measure(n, () => spawnQuiet(argv, env), Math.min(3, n)));
    log(`baseline ${b.key}: median ${entry.fig.median_ms.toFixed(3)} ms`);
  } catch (e) {
    entry.note = `could not run here: ${(e as Error).message}`;
    log(`baseline ${b.key}: ${entry.note}`);
  }
}

await baseline({ key: "bare", label: "bare spawn", command: "Bun.spawn(['/bin/true'])" }, BASELINE_N, ["/bin/true"]);
const bwrap = Bun.which("bwrap");
const bwrapVersion = bwrap ? sh([bwrap, "--version"]).out : "";
await baseline(
  { key: "bwrap", label: "bwrap", command: `bwrap --unshare-all --ro-bind / / /bin/true (${bwrapVersion || "not installed"})`, note: bwrap ? undefined : "bwrap not installed: run `make setup`" },
  BASELINE_N,
  bwrap ? [bwrap, "--unshare-all", "--ro-bind", "/", "/", "/bin/true"] : null,
);

// srt: installed for this run only (never a project dependency), into a temp prefix.
const srtDir = mkdtempSync(join(tmpdir(), "substrate-bench-srt-"));
try {
  const pkgName = "@anthropic-ai/sandbox-runtime";
  const view = sh(["npm", "view", `${pkgName}@${process.env.SRT_VERSION ?? "latest"}`, "version"]);
  const version = view.out.split("\n").pop()?.trim() ?? "";
  let srtArgv: string[] | null = null;
  let note: string | undefined;
  if (view.code !== 0 || !version) note = `npm view ${pkgName} failed: ${view.err.split("\n").slice(-2).join(" ")}`;
  else {
    const inst = sh(["npm", "install", "--no-save", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", srtDir, `${pkgName}@${version}`]);
    if (inst.code !== 0) note = `npm install ${pkgName}@${version} failed: ${inst.err.slice(-300)}`;
    else {
      // Closest to a Substrate world: no network at all, writes only to /tmp.
      const settings = join(srtDir, "srt-settings.json");
      writeFileSync(settings, JSON.stringify({ network: { allowedDomains: [], deniedDomains: [] }, filesystem: { denyRead: [], allowWrite: ["/tmp"], denyWrite: [] } }));
      srtArgv = [join(srtDir, "node_modules/.bin/srt"), "-s", settings, "/bin/true"];
    }
  }
  await baseline(
    { key: "srt", label: "srt", command: `srt -s <no network, write /tmp> /bin/true (${pkgName}@${version || "?"}, Node ${process.versions.node ? sh(["node", "--version"]).out : "?"})`, note },
    SRT_N,
    srtArgv,
  );
} finally {
  rmSync(srtDir, { recursive: true, force: true });
}
const base = (k: Baseline["key"]) => baselines.find((b) => b.key === k)?.fig;

// ---- benches -----------------------------------------------------------------------------------
interface BenchRun {
  file: string;
  code: number | null;
  timedOut: boolean;
  seconds: number;
  figures: Figure[];
  /** BENCH objects that are not figures (no median_ms), e.g. throughput or idle CPU */
  records: Record<string, unknown>[];
  text: string;
  stderrTail: string;
}

async function runBench(file: string): Promise<BenchRun> {
  const t0 = performance.now();
  // setsid: the bench may start agents/worlds; on timeout its whole process group goes.
  const p = Bun.spawn(["setsid", process.execPath, join("bench", file)], { cwd: ROOT, stdout: "pipe", stderr: "pipe", env: process.env as Record<string, string> });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      process.kill(-p.pid, "SIGTERM");
    } catch {}
    setTimeout(() => {
      try {
        process.kill(-p.pid, "SIGKILL");
      } catch {}
    }, 10_000).unref();
  }, TIMEOUT_S * 1000);
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  const code = await p.exited;
  clearTimeout(timer);
  const figures: Figure[] = [];
  const records: Record<string, unknown>[] = [];
  const text: string[] = [];
  for (const line of out.split("\n")) {
    if (line.startsWith("BENCH ")) {
      try {
        const o = JSON.parse(line.slice(6)) as Record<string, unknown>;
        if (typeof o.name === "string" && typeof o.median_ms === "number" && typeof o.p99_ms === "number") figures.push(o as unknown as Figure);
        else records.push(o);
        continue;
      } catch {}
    }
    text.push(line);
  }
  // Drop report()'s human line of each figure: the table already has it.
  const human = new Set(figures.map((f) => f.name.padEnd(48)));
  for (let i = text.length - 1; i >= 0; i--) if (human.has(text[i]!.split(" median ")[0]!)) text.splice(i, 1);
  const r = { file, code, timedOut, seconds: (performance.now() - t0) / 1000, figures, records, text: text.join("\n").trimEnd(), stderrTail: err.trim().split("\n").slice(-15).join("\n") };
  log(`${file}: exit ${code}${timedOut ? " (timeout)" : ""}, ${figures.length} figures, ${records.length} other records, ${r.seconds.toFixed(0)} s`);
  return r;
}

const files = readdirSync(join(ROOT, "bench"))
  .filter((f) => f.endsWith(".ts") && f !== "run.ts" && !f.startsWith("_"))
  .filter((f) => !ONLY || ONLY.includes(f.replace(/\.ts$/, "")))
  .sort();
const runs: BenchRun[] = [];
for (const f of files) runs.push(await runBench(f));
const loadEnd = loadavg();

// ---- goals -------------------------------------------------------------------------------------
/** A goal from an issue, and how this run measured it (a BENCH figure or a bench's text line). */
interface Goal {
  issue: string;
  goal: string;
  judge: () => { measured: string; met?: boolean };
}
const allFigures = runs.flatMap((r) => r.figures.map((f) => ({ ...f, file: r.file })));
const ran = (file: string) => runs.find((r) => r.file === file);
const figIn = (file: string, re: RegExp) => ran(file)?.figures.find((f) => re.test(f.name));
const figsIn = (file: string, re: RegExp) => ran(file)?.figures.filter((f) => re.test(f.name)) ?? [];
const recIn = (file: string, name: string) => ran(file)?.records.find((r) => r.name === name);
const textOf = (file: string) => ran(file)?.text ?? "";
const missing = (file: string, what = "figure") => ({ measured: ran(file) ? `bench/${file} printed no such ${what} (exit ${ran(file)!.timedOut ? "timeout" : ran(file)!.code})` : `bench/${file} not run / does not exist yet` });
const ms = (x: number) => `${x.toFixed(3)} ms`;
const num = (x: unknown) => (typeof x === "number" ? x : NaN);
/** "≤ bare + limit" against the bare spawn the same bench measured. */
function overBare(file: string, re: RegExp, limit: number): { measured: string; met?: boolean } {
  const b = figIn(file, /^bare Bun\.spawn/);
  const fs = figsIn(file, re);
  if (!b || !fs.length) return missing(file);
  const parts = fs.map((f) => `${f.name}: ${ms(f.median_ms)} (+${ms(f.median_ms - b.median_ms)})`);
  return { measured: `bare ${ms(b.median_ms)}; ${parts.join("; ")}`, met: fs.every((f) => f.median_ms - b.median_ms <= limit) };
}

const GOALS: Goal[] = [
  { issue: "#2", goal: "`/v1/execute` of /bin/true in a warm world ≤ bare spawn + 2 ms (median)", judge: () => overBare("exec.ts", /^\/v1\/execute argv=\[\/bin\/true\], warm world/, 2) },
  { issue: "#3", goal: "session exec ≤ bare spawn + 2 ms, each hardening mode (median)", judge: () => overBare("world.ts", /^world exec \/bin\/true, hardening:/, 2) },
  {
    issue: "#3",
    goal: "isolated exec of /bin/true incl. world + fs diff ≤ 10 ms (median)",
    judge: () => {
      const fs = figsIn("world.ts", /^isolated execute \/bin\/true incl\./).filter((f) => f.goal); // not the "vs cold" ratios
      return fs.length ? { measured: fs.map((f) => `${f.name}: ${ms(f.median_ms)}`).join("; "), met: fs.every((f) => f.median_ms <= 10) } : missing("world.ts");
    },
  },
  {
    issue: "#3",
    goal: "fs diff of an upper dir with 100k files ≤ 1 s",
    judge: () => {
      const line = textOf("fsdiff.ts").split("\n").find((l) => l.startsWith("goal (100k files)"));
      return line ? { measured: line, met: !/NOT met/.test(line) && / met /.test(`${line} `) } : missing("fsdiff.ts", "line");
    },
  },
  {
    issue: "#4",
    goal: "policy evaluate p99 ≤ 50 µs at 1,000 rules (spec: < 10 ms)",
    judge: () => {
      const line = textOf("policy.ts").split("\n").find((l) => /rules\s+1000/.test(l));
      return line ? { measured: line.replace(/\s+/g, " ").trim(), met: line.includes("goal p99 ≤ 50 µs: met") } : missing("policy.ts", "line");
    },
  },
  {
    issue: "#5",
    goal: "each graph query < 100 ms (p99) on a graph of 100k spans",
    judge: () => {
      const lines = textOf("graph.ts").split("\n").filter((l) => l.includes("x goal (100 ms)"));
      if (!lines.length) return missing("graph.ts", "line");
      const p99s = lines.map((l) => Number(l.match(/p99 ([\d.]+) ms/)?.[1] ?? NaN));
      return { measured: lines.map((l) => l.replace(/\s+/g, " ").split(";")[0]!.split(" = ")[0]!.trim()).join("; "), met: p99s.every((x) => x < 100) };
    },
  },
  {
    issue: "#6",
    goal: "the proxy adds ≤ 1 ms to an execute (median)",
    judge: () => {
      const a = figIn("api.ts", /^execute \/bin\/true → agent$/);
      const p = figIn("api.ts", /^execute \/bin\/true → proxy → agent$/);
      if (!a || !p) return missing("api.ts");
      return { measured: `agent ${ms(a.median_ms)}, via proxy ${ms(p.median_ms)}: +${ms(p.median_ms - a.median_ms)}`, met: p.median_ms - a.median_ms <= 1 };
    },
  },
  {
    issue: "#6",
    goal: "≥ 500 exec/s with 64 concurrent agents on 2 cores, 0 errors",
    judge: () => {
      const rs = (ran("api.ts")?.records ?? []).filter((r) => String(r.name).startsWith("throughput"));
      if (!rs.length) return missing("api.ts", "record");
      return { measured: rs.map((r) => `${r.name}: ${num(r.exec_per_s).toFixed(0)} exec/s, ${r.errors} errors`).join("; "), met: rs.every((r) => num(r.exec_per_s) >= 500 && r.errors === 0) };
    },
  },
  {
    issue: "#6",
    goal: "idle CPU of the agent and the shell client 0.0 % (open shell session)",
    judge: () => {
      const r = recIn("api.ts", "idle cpu");
      if (!r) return missing("api.ts", "record");
      return { measured: `over ${r.seconds} s: agent ${num(r.agent_pct).toFixed(2)} %, shell client ${num(r.shell_pct).toFixed(2)} %`, met: num(r.agent_pct) === 0 && num(r.shell_pct) === 0 };
    },
  },
  {
    issue: "#7",
    goal: "`substrate world warm` on a healthy VM ≤ 300 ms (guest harness, median)",
    judge: () => {
      const f = figIn("lima.ts", /^substrate world warm \(healthy VM/);
      const linux = figIn("lifecycle.ts", /^world warm \(no-op/);
      const extra = linux ? `; Linux host, agent running: ${ms(linux.median_ms)}` : "";
      return f ? { measured: `${f.name}: ${ms(f.median_ms)}${extra}`, met: f.median_ms <= 300 } : { ...missing("lima.ts"), measured: `${missing("lima.ts").measured}${extra}` };
    },
  },
  // Issue 15 (EGRESS): bench/egress.ts
  {
    issue: "#15",
    goal: "256 MiB download through a world's gateway ≥ 0.5× direct from the host netns",
    judge: () => {
      const d = figIn("egress.ts", /^download: direct/) as (Figure & { mb_per_s?: number }) | undefined;
      const w = [/^download: world, transparent/, /^download: world, HTTP proxy/].map((re) => figIn("egress.ts", re) as (Figure & { mb_per_s?: number }) | undefined);
      if (!d || w.some((x) => !x)) return missing("egress.ts");
      const r = w.map((x) => num(x!.mb_per_s) / num(d.mb_per_s));
      return { measured: `direct ${num(d.mb_per_s).toFixed(0)} MB/s; transparent ${num(w[0]!.mb_per_s).toFixed(0)} MB/s (${r[0]!.toFixed(2)}×); proxy ${num(w[1]!.mb_per_s).toFixed(0)} MB/s (${r[1]!.toFixed(2)}×)`, met: r.every((x) => x >= 0.5) };
    },
  },
  {
    issue: "#15",
    goal: "added connect latency through the gateway ≤ 1 ms (median)",
    judge: () => {
      const d = figIn("egress.ts", /^connect \+ 1-byte echo: direct/);
      const w = figIn("egress.ts", /^connect \+ 1-byte echo: world/);
      return d && w ? { measured: `direct ${ms(d.median_ms)}, world ${ms(w.median_ms)}: +${ms(w.median_ms - d.median_ms)}`, met: w.median_ms - d.median_ms <= 1 } : missing("egress.ts");
    },
  },
  {
    issue: "#15",
    goal: "a world's network setup ≥ 2× faster than the old veth + nft + dnsmasq path (median)",
    judge: () => {
      const b = figIn("egress.ts", /^world network setup: before/);
      const a = figIn("egress.ts", /^world network setup: after, helper warm/);
      return a && b ? { measured: `before ${ms(b.median_ms)}, after ${ms(a.median_ms)}: ${(b.median_ms / a.median_ms).toFixed(2)}×`, met: b.median_ms / a.median_ms >= 2 } : missing("egress.ts");
    },
  },
];

// ---- page ----------------------------------------------------------------------------------------
const busy = Math.max(loadStart[0]!, loadEnd[0]!) >= machine.nproc;
const heavy = Math.max(loadStart[0]!, loadEnd[0]!) > 2 * machine.nproc;
const ratio = (f: Figure, b?: Figure) => (b && b.median_ms > 0 ? `${(f.median_ms / b.median_ms).toFixed(2)}×` : "—");
const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");
const L: string[] = [];
L.push("# Performance", "");
L.push(
  `Generated by \`make bench\` (bench/run.ts) on ${startedAt.toISOString().replace(/\.\d+Z$/, "Z")} from commit \`${machine.commit}\`${machine.dirty ? " (work tree with uncommitted changes)" : ""}. Do not edit by hand: re-run \`make bench\`.`,
  "",
);
L.push(
  `**Machine:** ${machine.nproc} × ${machine.model}, ${machine.memGB} GB, kernel ${machine.kernel}, ${machine.os}, Bun ${machine.bun}. ` +
    `Load average (1/5/15 min) at start ${fmtLoad(loadStart)}, at end ${fmtLoad(loadEnd)}.`,
  "",
);
if (busy)
  L.push(
    `> **This run shared the machine with other work** — ${heavy ? "heavily loaded" : "loaded"}: load average ${loadStart[0]!.toFixed(1)} at start and ${loadEnd[0]!.toFixed(1)} at end on ${machine.nproc} cores (other builds and test suites were running in parallel). ` +
      "Absolute figures are pessimistic and noisy, p99 most of all; ratios against the baselines measured in the same run are the more meaningful numbers. Re-run `make bench` on an idle machine for absolute figures.",
    "",
  );
L.push("## Baselines (measured in this run)", "");
L.push("| baseline | command | median | p99 | n |", "|---|---|---:|---:|---:|");
for (const b of baselines)
  L.push(b.fig ? `| ${b.label} | ${cell(b.command)} | ${ms(b.fig.median_ms)} | ${ms(b.fig.p99_ms)} | ${b.fig.n} |` : `| ${b.label} | ${cell(b.command)} | — | — | — |`);
for (const b of baselines) if (b.note) L.push("", `- **${b.label}:** ${cell(b.note)}`);
L.push("");
const srt = base("srt");
if (srt && base("bare"))
  L.push(
    "`srt` starts a Node process per command and sets up its filtering proxies before running bwrap, so it pays that on every call; " +
      "a Substrate world is long-lived and pays its setup once (compare `substrate -c true` below, which includes starting the 160 MB host binary).",
    "",
  );
L.push("## Goals from the issues", "");
L.push("| issue | goal | measured in this run | status |", "|---|---|---|---|");
for (const g of GOALS) {
  let r: { measured: string; met?: boolean };
  try {
    r = g.judge();
  } catch (e) {
    r = { measured: `could not evaluate: ${(e as Error).message}` };
  }
  L.push(`| ${g.issue} | ${cell(g.goal)} | ${cell(r.measured)} | ${r.met === undefined ? "not measured" : r.met ? "met" : "**NOT met**"} |`);
}
L.push("");
L.push("## Figures", "");
L.push(
  "Every `BENCH` line printed by a bench (format: bench/README.md). The × columns divide the figure's median by the baselines above (same run); " +
    "they only mean something for figures that start a command, the bench's own ratio column is the one it chose.",
  "",
);
L.push("| bench | figure | median | p99 | n | × bare | × bwrap | × srt | bench's own ratio | goal |", "|---|---|---:|---:|---:|---:|---:|---:|---|---|");
for (const f of allFigures)
  L.push(
    `| ${f.file} | ${cell(f.name)} | ${ms(f.median_ms)} | ${ms(f.p99_ms)} | ${f.n} | ${ratio(f, base("bare"))} | ${ratio(f, base("bwrap"))} | ${ratio(f, srt)} | ${f.ratio !== undefined ? `${f.ratio.toFixed(2)}× ${cell(f.baseline ?? "")}` : ""} | ${cell(f.goal ?? "")} |`,
  );
if (!allFigures.length) L.push("| — | no BENCH lines in this run | | | | | | | | |");
L.push("");
const records = runs.flatMap((r) => r.records.map((o) => ({ ...o, file: r.file }) as Record<string, unknown> & { file: string }));
if (records.length) {
  L.push("Other BENCH records (no `median_ms`: rates, percentages):", "", "| bench | record | fields |", "|---|---|---|");
  const show = (v: unknown) => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : JSON.stringify(v));
  for (const { file, name, ...rest } of records) L.push(`| ${file} | ${cell(String(name ?? "?"))} | ${cell(Object.entries(rest).map(([k, v]) => `${k}=${show(v)}`).join(", "))} |`);
  L.push("");
}
L.push("## Bench runs", "");
L.push("| bench | exit | time | BENCH figures | other records |", "|---|---:|---:|---:|---:|");
for (const r of runs) L.push(`| ${r.file} | ${r.timedOut ? `timeout (${TIMEOUT_S} s)` : r.code} | ${r.seconds.toFixed(0)} s | ${r.figures.length} | ${r.records.length} |`);
L.push("");
for (const r of runs) {
  if ((r.figures.length || r.records.length) && r.code === 0 && !r.text.trim()) continue;
  L.push(`### bench/${r.file}${r.figures.length || r.records.length ? " (text lines besides its BENCH lines)" : " (text output, verbatim)"}`, "");
  L.push("```text", r.text.trim() || "(no output)", "```", "");
  if (r.code !== 0 || r.timedOut) L.push(`Exited ${r.timedOut ? "by timeout" : r.code}; last lines of stderr:`, "", "```text", r.stderrTail || "(none)", "```", "");
}
L.push("## Regenerating", "");
L.push(
  "`make bench` (builds the native binaries first, runs as root). `bun bench/run.ts --only exec,net` runs a subset. " +
    "`srt` is installed into a temporary npm prefix for the run (`npm install --no-save --prefix …`) and removed afterwards; it needs bwrap, socat and ripgrep (all in scripts/setup.sh).",
  "",
);

writeFileSync(OUT, L.join("\n"));
log(`wrote ${OUT}`);
