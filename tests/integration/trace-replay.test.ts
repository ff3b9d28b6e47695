/**
 * Trace, replay and graph through the real `substrate` CLI (compiled binary when built, else
 * source) against a real world agent, with a temp HOME and SUBSTRATE_TRACE.
 *
 * The golden replay (record a command writing files in an isolated world, replay it in a
 * fresh one, same exit and diff; then drift after a policy edit) needs `isolated: true` from
 * the agent. When the agent answers `unsupported` for isolated executes, those tests are
 * SKIPPED with a message saying so (they do not pass vacuously); the replay comparison
 * itself is covered by tests/unit/trace/replay.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentApiError } from "../../src/api/client.ts";
import { Span } from "../../src/contract/index.ts";
import { CommandSpan, readSpans, worldImageVersion } from "../../src/trace/index.ts";
import { hostArgv, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

let agent: TestAgent;
let home: string;
let proj: string;
let trace: string;
let isolatedOk = false;
let isolatedWhy = "";

function substrate(args: string[], o: { cwd?: string; env?: Record<string, string> } = {}) {
  const p = Bun.spawnSync([...hostArgv(), ...args], {
    cwd: o.cwd ?? proj,
    env: { PATH: process.env.PATH!, HOME: home, SUBSTRATE_TRACE: trace, SUBSTRATE_WORLD_SOCKET: agent.socket, ...o.env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

// Started at module level (top-level await) so the isolated-world probe can decide, before
// the tests are defined, whether the golden replay tests run or show up as skipped.
home = fs.mkdtempSync(join(tmpdir(), "substrate-trace-home-"));
trace = join(home, ".substrate", "trace.jsonl");
agent = await startAgent({ env: { SUBSTRATE_TRACE: join(home, "agent-trace.jsonl") } });
proj = tempProject();
fs.writeFileSync(join(proj, "keep.txt"), "keep\n");
try {
  const r = await agent.client.execute({ cmd: "true", cwd: proj, agent_id: "probe", isolated: true, world: { project_dir: proj, reuse_session: false } });
  isolatedOk = r.exit === 0;
  isolatedWhy = `probe exited ${r.exit}`;
} catch (e) {
  isolatedWhy = e instanceof AgentApiError ? `${e.code}: ${e.message}` : (e as Error).message;
}
if (!isolatedOk) console.warn(`SKIPPING golden replay tests: the agent cannot run isolated executes (${isolatedWhy})`);

afterAll(async () => {
  await agent?.stop();
  fs.rmSync(proj, { recursive: true, force: true });
  fs.rmSync(home, { recursive: true, force: true });
});

/** Record one command the way `substrate -c` does: isolated execute, command_start/complete spans. */
async function recordIsolated(cmd: string, policyCommit: string): Promise<string> {
  const caps = await agent.client.capabilities();
  const env = { PATH: "/usr/bin:/bin", LANG: "C.UTF-8" };
  const span = CommandSpan.start({ cmd, cwd: proj, env, component: "shell", policy_id: "default", policy_commit: policyCommit, world_image_version: worldImageVersion(caps.agent), tracePath: trace });
  const res = await agent.client.execute({ cmd, cwd: proj, env: { ...env, ...span.env }, agent_id: "human", isolated: true, world: { project_dir: proj } });
  span.complete(res);
  return span.id;
}

function currentPolicyCommit(): string {
  // what `replay` will compute for proj: the built-in default unless a policy file exists
  const r = substrate(["policy", "show", "--json"]);
  const j = JSON.parse(r.out);
  return j.commit ?? j.policy_commit ?? j.source?.commit;
}

describe("golden replay through the world", () => {
  test.skipIf(!isolatedOk)("a command writing files, replayed in a fresh world: same exit, same diff, exit 0", async () => {
    const id = await recordIsolated("mkdir -p out && echo hi > out/x.ts && echo more >> keep.txt && exit 3", currentPolicyCommit());
    const rec = (await readSpans({ path: trace, span_id: id })).at(-1)!;
    expect(rec.exit).toBe(3);
    expect(rec.fs_diff?.writes.some((p) => p.endsWith("out/x.ts"))).toBe(true);
    expect(fs.existsSync(join(proj, "out"))).toBe(false); // isolated: the project is untouched
    // the agent's own span for that execute carries the same diff
    const agentSpan = (await readSpans({ path: join(home, "agent-trace.jsonl"), parent_span: id })).at(-1)!;
    expect(agentSpan).toMatchObject({ component: "api", exit: 3 });
    expect(agentSpan.fs_diff).toEqual(rec.fs_diff);
    const r = substrate(["replay", id, "--json"]);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out);
    expect(report).toMatchObject({ span_id: id, reproduced: true, exit: { original: 3, replay: 3, match: true } });
    expect(report.fs_diff.match).toBe(true);
    expect(r.err).not.toContain("Policy has changed");
  }, 60_000);

  test.skipIf(!isolatedOk)("policy edited since the span: 'Policy has changed since span was recorded'", async () => {
    const id = await recordIsolated("echo a > a.ts", currentPolicyCommit());
    expect(substrate(["policy", "init"]).code).toBe(0); // writes ~/.substrate/policies/default.yaml
    fs.appendFileSync(join(home, ".substrate", "policies", "default.yaml"), "\n# edited\n");
    const r = substrate(["replay", id]);
    expect(r.err).toContain("Policy has changed since span was recorded");
    expect(r.code).toBe(0); // drift warns; the command still reproduced
    fs.rmSync(join(home, ".substrate", "policies"), { recursive: true, force: true });
  }, 60_000);
});

describe("replay that does not reproduce", () => {
  test.skipIf(!isolatedOk)("the project changed since: exit 1, report names the differing paths", async () => {
    fs.writeFileSync(join(proj, "flag"), "1");
    const id = await recordIsolated("if [ -f flag ]; then echo a > a.ts; else echo b > b.ts; exit 9; fi", currentPolicyCommit());
    fs.rmSync(join(proj, "flag"));
    const r = substrate(["replay", id, "--verbose"]);
    expect(r.code).toBe(1);
    expect(r.out).toContain("NOT REPRODUCED");
    expect(r.out).toMatch(/exit\s+DIFFER\s+original 0, replay 9/);
    expect(r.out).toContain("a.ts   (original only)");
    expect(r.out).toContain("b.ts   (replay only)");
    // the re-run is itself traced, linked to the original
    const rs = await readSpans({ path: trace, event_type: "replay" });
    expect(rs.at(-1)).toMatchObject({ replay_of: id, exit: 9 });
  }, 60_000);
});

describe("call sites write spans", () => {
  test("substrate -c through the world: command_start + command_complete (world id, replay context), agent span as child", async () => {
    const r = substrate(["-c", "echo traced; exit 5"]);
    expect(r.code).toBe(5);
    expect(r.out).toBe("traced\n");
    const mine = (await readSpans({ path: trace, cmd: "echo traced; exit 5" })).filter((s) => s.component === "shell");
    expect(mine.map((s) => s.event_type)).toEqual(["command_start", "command_complete"]);
    const done = mine[1]!;
    expect(done).toMatchObject({ exit: 5, cwd: proj, agent_id: "human", policy_id: "default" });
    expect(done.world_id).toMatch(/^wld_/);
    expect(done.replay_context).toMatchObject({ cwd: proj, path: process.env.PATH });
    expect(done.replay_context!.world_image_version).toMatch(/\+/);
    // the agent wrote its own span for the execute, linked to ours
    const agentSpans = await readSpans({ path: join(home, "agent-trace.jsonl"), parent_span: done.span_id });
    expect(agentSpans.map((s) => [s.component, s.exit, s.world_id])).toEqual([["api", 5, done.world_id]]);
  }, 60_000);

  test("secrets typed or exported never reach either trace file (grep)", async () => {
    const r = substrate(["-c", "echo --password=hunter2pw >/dev/null; curl -s -H 'Authorization: Bearer sekr3tBearerTok' http://127.0.0.1:9/ || true"], {
      env: { MY_API_TOKEN: "envOnlySecretValue42" },
    });
    expect(r.code).toBe(0);
    await agent.client.execute({ cmd: "true", cwd: proj, agent_id: "claude", env: { AWS_SECRET_ACCESS_KEY: "awsEnvSecretXYZ" }, world: { project_dir: proj } });
    const host = fs.readFileSync(trace, "utf8");
    const world = fs.readFileSync(join(home, "agent-trace.jsonl"), "utf8");
    for (const secret of ["hunter2pw", "sekr3tBearerTok", "envOnlySecretValue42", "awsEnvSecretXYZ"]) {
      expect(host).not.toContain(secret);
      expect(world).not.toContain(secret);
    }
    expect(host).toContain("--password=[REDACTED]");
  }, 60_000);

  test("API execute: its span_id is served by GET /v1/trace/:span_id, secrets redacted", async () => {
    const res = await agent.client.execute({ cmd: "true --token=abc123secret", cwd: proj, agent_id: "claude", world: { project_dir: proj } });
    const got = await agent.client.request("GET", `/v1/trace/${res.span_id}`);
    expect(got.status).toBe(200);
    const body = JSON.stringify(await got.json());
    expect(body).toContain(res.span_id);
    expect(body).toContain("--token=[REDACTED]");
    expect(fs.readFileSync(join(home, "agent-trace.jsonl"), "utf8")).not.toContain("abc123secret");
  }, 60_000);
});

describe("CLI without executing", () => {
  const mk = (cmd: string, extra: Partial<Span> = {}): Span =>
    Span.parse({
      ts: new Date().toISOString(),
      event_type: "command_complete",
      session_id: "ses_cli",
      span_id: `spn_${Bun.randomUUIDv7()}`,
      component: "shell",
      cwd: proj,
      cmd,
      exit: 0,
      ...extra,
    });
  let ids: Record<string, string> = {};

  beforeAll(() => {
    fs.mkdirSync(join(home, ".substrate"), { recursive: true });
    const spans = [
      mk("rm -rf /", { agent_id: "claude" }),
      mk("make", { agent_id: "cursor", fs_diff: { writes: ["src/gen.ts", ".env", "private/key.ts"], mods: [], deletes: [] } }),
      mk("ls -la"),
    ];
    const w = new (require("../../src/trace/index.ts").TraceWriter)({ path: trace });
    for (const s of spans) w.write(s);
    ids = { rm: spans[0]!.span_id, make: spans[1]!.span_id, ls: spans[2]!.span_id };
  });

  test("trace <id> / --agent / --cmd / --json; unknown id is a usage error", () => {
    const one = substrate(["trace", ids.make!]);
    expect(one.code).toBe(0);
    expect(one.out).toContain("+ src/gen.ts");
    const byAgent = JSON.parse(substrate(["trace", "--agent", "claude", "--json"]).out);
    expect(byAgent.map((s: Span) => s.cmd)).toEqual(["rm -rf /"]);
    expect(substrate(["trace", "--cmd", "ma*"]).out).toContain("make");
    const bad = substrate(["trace", "spn_00000000-0000-7000-8000-000000000000"]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("substrate trace --last 20");
    expect(substrate(["trace", "--last", "zero"]).code).toBe(2);
  });

  test("replay --policy FILE: would it have been allowed? (nothing runs; 126 when one would be denied)", () => {
    const pol = join(home, "strict.yaml");
    fs.writeFileSync(pol, "id: strict\nname: Strict\nmode: enforce\ncommands:\n  denied:\n    - \"rm -rf *\"\n");
    const since = new Date(Date.now() - 3600_000).toISOString();
    const r = substrate(["replay", "--policy", pol, "--since", since, "--json"]);
    expect(r.code).toBe(126);
    const res = JSON.parse(r.out).results as { cmd: string; decision: string; pattern?: string }[];
    expect(res.find((x) => x.cmd === "rm -rf /")).toMatchObject({ decision: "deny", pattern: "rm -rf *" });
    expect(res.find((x) => x.cmd === "ls -la")?.decision).toBe("allow");
    const one = substrate(["replay", ids.ls!, "--policy", pol]);
    expect(one.code).toBe(0);
    expect(one.out).toContain("ALLOW");
    expect(substrate(["replay", "--policy", join(home, "missing.yaml"), "--since", since]).code).toBe(2);
  });

  test("graph: off by default (exit 2 + hint), then who-wrote / what-changed / agent; .env never indexed", () => {
    const off = substrate(["graph", "agent", "cursor"]);
    expect(off.code).toBe(2);
    expect(off.err).toContain("enabled = true");
    // a policy's privacy.ignore_paths adds to the built-in ones
    fs.mkdirSync(join(home, ".substrate", "policies"), { recursive: true });
    fs.writeFileSync(join(home, ".substrate", "policies", "priv.yaml"), "id: priv\nname: Priv\nprivacy:\n  ignore_paths: ['**/private']\n");
    fs.writeFileSync(join(home, ".substrate", "config.toml"), "[graph]\nenabled = true\n");
    const who = JSON.parse(substrate(["graph", "who-wrote", join(proj, "src/gen.ts"), "--json"]).out);
    expect(who.writers.map((w: { span_id: string }) => w.span_id)).toEqual([ids.make]);
    const changed = JSON.parse(substrate(["graph", "what-changed", ids.make!, "--json"]).out);
    expect(changed.files.map((f: { path: string }) => f.path)).toEqual([join(proj, "src/gen.ts")]);
    const a = JSON.parse(substrate(["graph", "agent", "cursor", "--json"]).out);
    expect(a).toMatchObject({ agent_id: "cursor", spans: 1, files_written: 1 });
    expect(substrate(["graph", "who-wrote", join(proj, ".env")]).out).toContain("no recorded span wrote");
    expect(substrate(["graph", "who-wrote", join(proj, "private/key.ts")]).out).toContain("no recorded span wrote");
    const db = fs.readdirSync(join(home, ".substrate", "graph")).map((f) => fs.readFileSync(join(home, ".substrate", "graph", f)).toString("latin1")).join("");
    expect(db).not.toContain("private/key.ts");
    expect(db).not.toContain("/.env");
    fs.rmSync(join(home, ".substrate", "config.toml"));
    fs.rmSync(join(home, ".substrate", "policies"), { recursive: true });
  });
});
