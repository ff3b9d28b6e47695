/**
 * Issue 18.4, the CLI as the stream client: `substrate -c … | slow-reader`. The CLI must not
 * buffer the command's output without bound while its stdout's reader lags (it stops reading
 * the stream, so the agent holds the command), must not lose what it has not written yet when
 * the command ends (process.exit drops what a pipe has not taken), and a reader that goes away
 * ends the command (141, as SIGPIPE would). Before: 65 536 of 22 888 896 bytes arrived, exit 0.
 *
 * Real binaries, a real agent; the checks are bytes (pattern, order, count), exit codes and RSS
 * from /proc — never time (the sleeps are the slow readers).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostArgv, pidsMentioning, startAgent, type TestAgent } from "../helpers/agent.ts";
import { MiB, PatternCheck, peakRssGrowth, rssOf } from "./backpressure-helpers.ts";

const RSS_CAP = 64 * MiB;
const SEQ_BYTES = 22_888_896; // `seq 1 3000000`

let agent: TestAgent;
let dir: string;
let proj: string;
let env: Record<string, string>;
const cli = hostArgv().map((a) => `'${a}'`).join(" ");

beforeAll(async () => {
  agent = await startAgent();
  dir = mkdtempSync(join(tmpdir(), "substrate-bp-cli-"));
  proj = join(dir, "proj");
  mkdirSync(proj);
  mkdirSync(join(dir, "home"));
  env = {
    PATH: "/usr/local/bin:/usr/bin:/bin",
    HOME: join(dir, "home"),
    LANG: "C.UTF-8",
    SUBSTRATE_TRACE: join(dir, "trace.jsonl"),
    SUBSTRATE_WORLD_SOCKET: agent.socket,
    SHELL: "/bin/bash",
  };
  await agent.client.execute({ cmd: "true", cwd: proj, agent_id: "bp-cli", world: { project_dir: proj } });
});
afterAll(async () => {
  await agent.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** `pipeline` in bash from the project; its stdout, and `PIPESTATUS` on the last line. */
async function sh(pipeline: string): Promise<{ out: string; status: string }> {
  const p = Bun.spawn(["bash", "-c", `${pipeline}; echo "rc=\${PIPESTATUS[*]}"`], { cwd: proj, env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const out = await new Response(p.stdout as ReadableStream).text();
  await p.exited;
  const lines = out.trimEnd().split("\n");
  return { status: lines.pop()!, out: lines.join("\n") };
}

test("a slow reader gets every byte of -c, -c with piped stdin, stderr and --pty -c output, and the command's exit code", async () => {
  for (const [name, pipeline] of [
    ["-c", `${cli} -c 'seq 1 3000000' | (sleep 3; wc -c)`],
    ["-c, stdin piped", `echo | ${cli} -c 'seq 1 3000000' | (sleep 3; wc -c)`],
    ["-c, stderr", `${cli} -c 'seq 1 3000000 >&2' 2>&1 >/dev/null | (sleep 3; wc -c)`],
    ["--pty -c", `${cli} --pty -c 'stty -opost; seq 1 3000000' | (sleep 3; wc -c)`],
  ] as const) {
    const r = await sh(pipeline);
    expect({ name, bytes: Number(r.out.trim()) }).toEqual({ name, bytes: SEQ_BYTES });
    expect({ name, status: r.status }).toEqual({ name, status: name === "-c, stdin piped" ? "rc=0 0 0" : "rc=0 0" });
  }
}, 180_000);

test("a reader that takes nothing for 10 s of `yes`: the CLI's and the agent's RSS stay under a cap, nothing is lost", async () => {
  const mark = "bp-cli-10s-7398";
  const check = new PatternCheck(200 * MiB, 1_000_000);
  const p = Bun.spawn(["bash", "-c", `${cli} -c '{ yes | head -c ${200 * MiB}; seq 1 1000000; }; : ${mark}' | (sleep 10; cat)`], { cwd: proj, env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const reading = (async () => {
    for await (const c of p.stdout as ReadableStream<Uint8Array>) check.push(c);
  })();
  // the CLI process: its command line carries the mark (bash -c's too: take the compiled binary's)
  let cliPid = 0;
  for (let i = 0; i < 400 && !cliPid; i++) {
    cliPid = pidsMentioning(mark).find((pid) => pid !== p.pid && !/^bash/.test(readFileSync(`/proc/${pid}/comm`, "utf8"))) ?? 0;
    if (!cliPid) await Bun.sleep(25);
  }
  expect(cliPid).toBeGreaterThan(0);
  // the baseline once the CLI has loaded and its stdout is full (the reader sleeps 10 s)
  await Bun.sleep(1_500);
  const cliRss = rssOf(cliPid);
  const [agentPeak, cliPeak] = (await peakRssGrowth([{ pid: agent.pid, baseline: rssOf(agent.pid) }, { pid: cliPid, baseline: rssOf(cliPid) }], 7_000)) as [number, number];
  await reading;
  expect(await p.exited).toBe(0);
  console.log(`substrate -c | (sleep 10; cat): RSS growth while its reader took nothing: CLI ${(cliPeak / MiB).toFixed(1)} MiB (of ${(cliRss / MiB).toFixed(0)} MiB), agent ${(agentPeak / MiB).toFixed(1)} MiB; ${check.bytes} bytes delivered`);
  expect(cliPeak).toBeLessThan(RSS_CAP);
  expect(agentPeak).toBeLessThan(RSS_CAP);
  expect({ firstBad: check.firstBad, bytes: check.bytes }).toEqual({ firstBad: undefined, bytes: check.expectedBytes });
  expect(check.complete).toBe(true);
}, 180_000);

test("a reader that goes away ends the command: `substrate -c yes | head -c 10` exits 141 and nothing keeps running", async () => {
  const mark = "bp-cli-epipe-7399";
  const r = await sh(`${cli} -c 'yes; : ${mark}' | head -c 10`);
  expect(r.out).toBe("y\ny\ny\ny\ny");
  expect(r.status).toBe("rc=141 0");
  for (let i = 0; i < 200 && pidsMentioning(mark).length; i++) await Bun.sleep(25);
  expect(pidsMentioning(mark)).toEqual([]);
}, 60_000);
