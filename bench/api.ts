#!/usr/bin/env bun
/**
 * Agent API figures (issue 6), all against a baseline measured in the same run
 * (bare `Bun.spawn('/bin/true')`). Prints figures and ratios; never fails on time.
 *
 * 1. POST /v1/execute latency p50/p99 straight to the agent and through `substrate proxy`
 *    (a separate process, as users run it) — goal: the proxy adds <= 1 ms.
 * 2. Throughput: 64 concurrent agents x 100 executes each, agent and proxy — goal: >= 500
 *    exec/s on 2 cores, 0 errors.
 * 3. PTY keystroke echo round trip over /v1/stream (byte out → echoed byte back).
 * 4. Idle CPU over BENCH_IDLE_S seconds (default 10; the spec's figure is 60): the agent with
 *    an open idle PTY shell session, and the `substrate shell` client attached to it.
 *
 * Run as root: `bun bench/api.ts` (BENCH_N, BENCH_AGENTS, BENCH_PER_AGENT, BENCH_IDLE_S).
 * BENCH_GC_TIMER_DISABLE=1 starts agent and shell with BUN_GC_TIMER_DISABLE=1: measured with
 * strace, Bun's own 1 Hz GC timer (it reads /proc/self/statm every second) is the only
 * thing that wakes an idle agent or shell; nothing of ours polls.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startAgent } from "../tests/helpers/agent.ts";
import { openStream } from "../tests/integration/api-helpers.ts";
import { figure, measure, percentile, report } from "./_stats.ts";

const ROOT = resolve(import.meta.dir, "..");
const N = Number(process.env.BENCH_N ?? 300);
const AGENTS = Number(process.env.BENCH_AGENTS ?? 64);
const PER = Number(process.env.BENCH_PER_AGENT ?? 100);
const IDLE_S = Number(process.env.BENCH_IDLE_S ?? 10);
const dir = mkdtempSync(join(tmpdir(), "substrate-bench-api-"));
const gcEnv: Record<string, string> = process.env.BENCH_GC_TIMER_DISABLE === "1" ? { BUN_GC_TIMER_DISABLE: "1" } : {};
const proj = join(dir, "proj");
await Bun.$`mkdir -p ${proj}`;

async function post(sock: string, body: unknown): Promise<{ status: number; exit?: number }> {
  const r = await fetch("http://localhost/v1/execute", { method: "POST", unix: sock, headers: { "content-type": "application/json" }, body: JSON.stringify(body) } as RequestInit);
  const j = (await r.json()) as { exit?: number };
  return { status: r.status, exit: j.exit };
}
const execBody = (agent: string) => ({ argv: ["/bin/true"], cwd: proj, agent_id: agent });

/** CPU seconds (user + system) a process and its threads used so far. */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return (Number(rest[11]) + Number(rest[12])) / 100; // utime, stime in clock ticks (USER_HZ=100)
}

console.log(`# bench/api.ts — ${cpus().length} CPUs, N=${N}, ${AGENTS} agents x ${PER} executes`);
const bare = figure("bare Bun.spawn(/bin/true)", await measure(N, async () => void (await Bun.spawn(["/bin/true"]).exited)));
report(bare);

const agent = await startAgent({ argv: [process.execPath, join(ROOT, "agent/main.ts")], env: { SUBSTRATE_TRACE: join(dir, "trace.jsonl"), ...gcEnv } });
const proxySock = join(dir, "proxy", "agent.sock");
const proxy = Bun.spawn([process.execPath, join(ROOT, "src/main.ts"), "proxy", "--socket", proxySock, "--agent-socket", agent.socket, "--audit", join(dir, "audit.jsonl"), "--rate", "100000"], {
  stdout: "ignore",
  stderr: "pipe",
  env: { ...process.env, HOME: dir, SUBSTRATE_TRACE: join(dir, "host-trace.jsonl") },
});
try {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch("http://localhost/v1/capabilities", { unix: proxySock } as RequestInit)).ok) break;
    } catch {}
    await Bun.sleep(25);
  }
  await post(agent.socket, execBody("warm")); // the session world

  // 1. latency — interleaved (agent, proxy, agent, ...) so load from anything else on the
  // machine hits both series alike; the proxy's cost is the difference of the two.
  for (let i = 0; i < 20; i++) await post(proxySock, execBody("lat-p"));
  const dl: number[] = [];
  const pl: number[] = [];
  for (let i = 0; i < N; i++) {
    let t = performance.now();
    await post(agent.socket, execBody("lat"));
    dl.push(performance.now() - t);
    t = performance.now();
    await post(proxySock, execBody("lat-p"));
    pl.push(performance.now() - t);
  }
  dl.sort((x, y) => x - y);
  pl.sort((x, y) => x - y);
  const direct = figure("execute /bin/true → agent", dl, { baseline: "bare spawn" });
  direct.ratio = direct.median_ms / bare.median_ms;
  report(direct);
  const viaProxy = figure("execute /bin/true → proxy → agent", pl, { baseline: "bare spawn", goal: "proxy adds <= 1 ms" });
  viaProxy.ratio = viaProxy.median_ms / bare.median_ms;
  report(viaProxy);
  console.log(`  proxy overhead: median ${(viaProxy.median_ms - direct.median_ms).toFixed(3)} ms, p99 ${(viaProxy.p99_ms - direct.p99_ms).toFixed(3)} ms (${(viaProxy.median_ms / direct.median_ms).toFixed(2)}x direct)`);
  const cap = figure("GET /v1/capabilities → agent", await measure(N, () => fetch("http://localhost/v1/capabilities", { unix: agent.socket } as RequestInit).then((r) => r.text())));
  const capP = figure("GET /v1/capabilities → proxy → agent", await measure(N, () => fetch("http://localhost/v1/capabilities", { unix: proxySock } as RequestInit).then((r) => r.text())));
  report(cap);
  report(capP);
  console.log(`  proxy overhead without a command: median ${(capP.median_ms - cap.median_ms).toFixed(3)} ms`);

  // 2. throughput
  for (const [name, sock] of [["agent", agent.socket], ["proxy", proxySock]] as const) {
    let errors = 0;
    const lat: number[] = [];
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: AGENTS }, async (_, a) => {
        for (let i = 0; i < PER; i++) {
          const t = performance.now();
          try {
            const r = await post(sock, execBody(`tp-${name}-${a}`));
            if (r.status !== 200 || r.exit !== 0) errors++;
          } catch {
            errors++;
          }
          lat.push(performance.now() - t);
        }
      }),
    );
    const s = (performance.now() - t0) / 1000;
    const rate = (AGENTS * PER) / s;
    lat.sort((x, y) => x - y);
    console.log(
      `throughput via ${name.padEnd(5)}: ${rate.toFixed(0)} exec/s (${AGENTS * PER} in ${s.toFixed(2)} s), errors ${errors}, latency p50 ${percentile(lat, 50).toFixed(2)} ms p99 ${percentile(lat, 99).toFixed(2)} ms  (goal >= 500 exec/s; bare spawn rate ${(1000 / bare.median_ms).toFixed(0)}/s sequential)`,
    );
    console.log(`BENCH ${JSON.stringify({ name: `throughput ${name}`, exec_per_s: rate, errors, n: AGENTS * PER, p50_ms: percentile(lat, 50), p99_ms: percentile(lat, 99), goal: ">= 500 exec/s, 0 errors" })}`);
  }

  // 3. PTY keystroke echo
  const s = await openStream(agent.socket, { cmd: "stty -icanon; printf READY; cat > /dev/null", cwd: proj, agent_id: "pty-bench", cols: 80, rows: 24 });
  await s.untilText("READY");
  let seen = s.bytes().length;
  const echo = await measure(Math.min(N, 500), async () => {
    s.send("x");
    await s.until(() => s.bytes().length > seen, "echo");
    seen = s.bytes().length;
  });
  const ef = figure("PTY keystroke echo round trip (/v1/stream)", echo, { baseline: "bare spawn" });
  ef.ratio = ef.median_ms / bare.median_ms;
  report(ef);
  const sp = await openStream(proxySock, { cmd: "stty -icanon; printf READY; cat > /dev/null", cwd: proj, agent_id: "pty-bench-p", cols: 80, rows: 24 });
  await sp.untilText("READY");
  let seenP = sp.bytes().length;
  const echoP = figure("PTY keystroke echo via proxy", await measure(Math.min(N, 500), async () => {
    sp.send("x");
    await sp.until(() => sp.bytes().length > seenP, "echo");
    seenP = sp.bytes().length;
  }), { baseline: "bare spawn" });
  echoP.ratio = echoP.median_ms / bare.median_ms;
  report(echoP);
  s.close();
  sp.close();

  // 4. idle CPU: an idle `substrate shell` attached to a PTY bash in the world
  const shell = Bun.spawn([process.execPath, join(ROOT, "src/main.ts"), "shell"], {
    cwd: proj,
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, HOME: dir, SHELL: "/bin/bash", SUBSTRATE_WORLD_SOCKET: agent.socket, SUBSTRATE_TRACE: join(dir, "shell-trace.jsonl"), ...gcEnv },
  });
  const reader = (shell.stdout as ReadableStream<Uint8Array>).getReader();
  let out = "";
  (shell.stdin as import("bun").FileSink).write("echo SHELL-UP\n");
  (shell.stdin as import("bun").FileSink).flush();
  while (!out.includes("SHELL-UP\r\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    out += new TextDecoder().decode(value);
  }
  void (async () => {
    for (;;) if ((await reader.read()).done) break;
  })();
  await Bun.sleep(1000); // let startup work settle
  const a0 = cpuSeconds(agent.pid);
  const c0 = cpuSeconds(shell.pid);
  await Bun.sleep(IDLE_S * 1000);
  const aPct = ((cpuSeconds(agent.pid) - a0) / IDLE_S) * 100;
  const cPct = ((cpuSeconds(shell.pid) - c0) / IDLE_S) * 100;
  console.log(`idle CPU over ${IDLE_S} s with an open shell session${gcEnv.BUN_GC_TIMER_DISABLE ? " (BUN_GC_TIMER_DISABLE=1)" : ""}: agent ${aPct.toFixed(2)} %, substrate shell client ${cPct.toFixed(2)} %  (goal 0.0 %; resolution 1 tick = ${(100 / IDLE_S / 100).toFixed(2)} %)`);
  console.log(`BENCH ${JSON.stringify({ name: "idle cpu", seconds: IDLE_S, agent_pct: aPct, shell_pct: cPct, goal: "0.0 %" })}`);
  (shell.stdin as import("bun").FileSink).write("exit\n");
  await (shell.stdin as import("bun").FileSink).end();
  await shell.exited;
} finally {
  proxy.kill("SIGTERM");
  await proxy.exited;
  await agent.stop();
  rmSync(dir, { recursive: true, force: true });
}
