/**
 * `substrate health` against a real agent on a private socket: the world doctor envelope
 * (through the DS0 contract), policy validity, shims, trace size + last span, agent uptime;
 * exit codes 0 (healthy), 2 (the policy in force does not validate), 3 (no agent).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { HealthReport, newSpanId } from "../../src/contract/index.ts";
import { startAgent, type TestAgent } from "../helpers/agent.ts";
import { lastLine } from "../../src/cli/health.ts";

const ROOT = resolve(import.meta.dir, "../..");
const CLI = [process.execPath, join(ROOT, "src/main.ts")];
let agent: TestAgent;
let dir: string;
let home: string;
let trace: string;

function health(args: string[] = [], env: Record<string, string> = {}) {
  const p = Bun.spawnSync([...CLI, "health", ...args], {
    cwd: dir,
    env: { PATH: process.env.PATH!, HOME: home, SUBSTRATE_WORLD_SOCKET: agent.socket, SUBSTRATE_TRACE: trace, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

beforeAll(async () => {
  agent = await startAgent();
  dir = mkdtempSync(join(tmpdir(), "substrate-health-it-"));
  home = join(dir, "home");
  mkdirSync(join(home, ".substrate", "shims"), { recursive: true });
  trace = join(dir, "trace.jsonl");
});
afterAll(async () => {
  await agent.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("substrate health", () => {
  test("JSON: doctor envelope, builtin policy valid, no shims, trace last span, agent uptime", () => {
    const id = newSpanId();
    const span = { ts: "2026-01-01T00:00:00.000Z", event_type: "command_complete", session_id: "s", span_id: id, component: "shell", agent_id: "human", cmd: "echo hi", exit: 0 };
    writeFileSync(trace, `${JSON.stringify({ ...span, span_id: newSpanId() })}\n${JSON.stringify(span)}\n`);
    const r = health(["--json"]);
    const h = HealthReport.parse(JSON.parse(r.out));
    expect(h.doctor.schema_version).toBe(1);
    expect("world" in h.doctor && h.doctor.world.status).toBe("ok");
    expect(h.policy).toMatchObject({ id: "default", file: "builtin:default", valid: true, error: null });
    expect(h.shims).toMatchObject({ dir: join(home, ".substrate", "shims"), installed: [], on_path: false });
    expect(h.trace.size_bytes).toBeGreaterThan(0);
    expect(h.trace.last_span).toEqual({ span_id: id, ts: span.ts, cmd: "echo hi" });
    expect(h.agent).toMatchObject({ reachable: true, socket_path: agent.socket });
    expect(h.agent.uptime_ms).toBeGreaterThanOrEqual(0);
    // ok follows the doctor (this host's host block may say no: hybrid cgroups are fine, but not every CI host has everything)
    expect(h.ok).toBe(h.doctor.ok && h.policy.valid);
    if (h.ok) expect(r.code).toBe(0);
    else expect([3, 4]).toContain(r.code!);
  }, 120_000);

  test("text: the doctor sections then policy/shims/trace/agent lines, doctor prefixes only", () => {
    const r = health();
    const lines = r.out.trimEnd().split("\n");
    expect(lines[0]).toBe("== substrate health ==");
    expect(r.out).toContain("== substrate world doctor ==");
    expect(r.out).toContain("== Policy, shims, trace, agent ==");
    for (const l of lines) expect(l).toMatch(/^(==|PASS {2}\||WARN {2}\||FAIL {2}\||INFO {2}\|)/);
    expect(r.out).toMatch(/^PASS {2}\| agent: .* up \d+ s$/m);
  }, 120_000);

  test("a broken policy in force: valid=false, exit 2", () => {
    const h2 = join(dir, "home2");
    mkdirSync(join(h2, ".substrate", "policies"), { recursive: true });
    writeFileSync(join(h2, ".substrate", "policies", "default.yaml"), "world: [not, a, map\n");
    const r = health(["--json"], { HOME: h2 });
    expect(r.code).toBe(2);
    const h = HealthReport.parse(JSON.parse(r.out));
    expect(h.policy.valid).toBe(false);
    expect(h.policy.error).toContain("default.yaml");
    expect(h.ok).toBe(false);
  }, 120_000);

  test("no agent: not reachable, exit 3 (world doctor's code)", () => {
    const r = health(["--json"], { SUBSTRATE_WORLD_SOCKET: join(dir, "none.sock") });
    expect(r.code).toBe(3);
    const h = HealthReport.parse(JSON.parse(r.out));
    expect(h.agent.reachable).toBe(false);
    expect("world" in h.doctor && h.doctor.world.status).toBe("unreachable");
  }, 120_000);

  test("lastLine reads only the tail of a big file", () => {
    const f = join(dir, "big.jsonl");
    writeFileSync(f, `${"x".repeat(200_000)}\n{"last":1}\n`);
    expect(lastLine(f)).toBe('{"last":1}');
    expect(lastLine(join(dir, "missing"))).toBeNull();
  });
});
