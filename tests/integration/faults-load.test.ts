/**
 * Issue 18 faults: concurrent clients × executes while worlds are killed at random (their
 * spawner SIGKILLed, or deleted through the API). Every request gets an answer — a result or a
 * JSON error, never a dropped connection or a non-JSON body; no span is lost or torn (every
 * result's span_id is in the agent's trace exactly once, every trace line is whole JSON);
 * nothing leaks once the agent stops (processes, mounts, cgroups, world dirs).
 *
 * Scaled to stay well under 3 minutes on 2 cores (FAULTS_CLIENTS × FAULTS_PER, default
 * 16 × 10); bench/load.ts runs the 64 × 100 with and without faults.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { runLoad } from "../../bench/_load-driver.ts";
import { eventually, pidsMentioning, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

const CLIENTS = Number(process.env.FAULTS_CLIENTS ?? 16);
const PER = Number(process.env.FAULTS_PER ?? 10);

let agent: TestAgent;
let proj: string;
let trace: string;
beforeAll(async () => {
  proj = tempProject("substrate-faults-load-");
  trace = join(proj, "..", `substrate-faults-load-${process.pid}.jsonl`);
  agent = await startAgent({ env: { SUBSTRATE_TRACE: trace } });
});
afterAll(async () => {
  if (agent?.proc.exitCode === null) await agent.stop();
  rmSync(proj, { recursive: true, force: true });
  rmSync(trace, { force: true });
});

const alive = (pid: number): boolean => {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(" ")[2] !== "Z";
  } catch {
    return false;
  }
};

test(`${CLIENTS} clients × ${PER} executes while worlds are killed at random: every request answered, no span lost or torn, nothing leaks`, async () => {
  const r = await runLoad({ socket: agent.socket, projectDir: proj, clients: CLIENTS, perClient: PER, agents: 8, killEveryMs: 150, cmd: (c, i) => `echo ok-${c}-${i}; sleep 0.0$((RANDOM % 5))` });
  // the load really met faults
  expect(r.kills.sigkill + r.kills.delete).toBeGreaterThan(2);
  expect(r.answers.length).toBe(CLIENTS * PER);
  // every request: a result or a JSON error
  expect(r.failures).toEqual([]);
  expect(r.ok).toBeGreaterThan(0);
  const codes = new Set(r.answers.filter((a) => a.kind === "json_error").map((a) => a.code));
  const odd = r.answers.filter((a) => a.kind === "json_error" && a.code !== "unavailable");
  expect(odd.map((a) => `${a.code}: ${a.detail}`)).toEqual([]);
  // results carry exactly their own output (no crossed streams between concurrent commands)
  for (const a of r.answers.filter((x) => x.kind === "ok" || x.kind === "killed")) expect(a.span_id).toMatch(/^spn_/);

  // spans: whole lines, each result's span exactly once
  const lines = readFileSync(trace, "utf8").split("\n").filter(Boolean);
  const spans = lines.map((l) => {
    try {
      return JSON.parse(l) as { span_id?: string; event_type?: string };
    } catch {
      return null;
    }
  });
  expect(spans.filter((s) => s === null).length).toBe(0);
  const count = new Map<string, number>();
  for (const s of spans) if (s?.span_id) count.set(s.span_id, (count.get(s.span_id) ?? 0) + 1);
  const lost = r.answers.filter((a) => (a.kind === "ok" || a.kind === "killed") && count.get(a.span_id!) !== 1).map((a) => a.span_id);
  expect(lost).toEqual([]);

  // the agent survived and still serves
  expect(agent.proc.exitCode).toBeNull();
  const after = await agent.client.execute({ cmd: "echo after", cwd: proj, agent_id: "load-after" });
  expect(Buffer.from(after.stdout_b64, "base64").toString()).toBe("after\n");

  // nothing leaks: worlds the agent lost are cleaned while it runs, the rest when it stops
  const worlds = [...new Set([...r.worldsSeen, after.world_id])];
  const stateDir = agent.stateDir;
  await agent.stop();
  await eventually(async () => {
    const left = [
      ...pidsMentioning(stateDir).filter(alive).map((p) => `process ${p}`),
      ...worlds.flatMap((w) => pidsMentioning(w).filter(alive).map((p) => `process ${p} (${w})`)),
      ...readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((l) => l.includes(stateDir) || worlds.some((w) => l.includes(w))).map((m) => `mount ${m}`),
      ...worlds.flatMap((w) => {
        const f = Bun.spawnSync(["find", "/sys/fs/cgroup", "-maxdepth", "8", "-type", "d", "-name", w], { stdout: "pipe", stderr: "ignore" });
        return f.stdout.toString().split("\n").filter(Boolean).map((d) => `cgroup ${d}`);
      }),
      ...(existsSync(join(stateDir, "worlds")) ? readdirSync(join(stateDir, "worlds")).map((d) => `world dir ${d}`) : []),
    ];
    if (left.length) throw new Error(`left behind: ${left.slice(0, 10).join("; ")}`);
  }, 30_000);
  console.log(`faults-load: ${r.answers.length} requests, ${r.ok} results (+${r.killed} killed with their world), ${r.jsonErrors} JSON errors (${[...codes].join(",") || "none"}), kills ${r.kills.sigkill} SIGKILL + ${r.kills.delete} DELETE, ${r.execPerSec.toFixed(0)} exec/s, p99 ${r.p99.toFixed(0)} ms, ${worlds.length} worlds`);
}, 170_000);
