/**
 * Entry-point parity (issue 17): the same command through `-c`, `--pty -c`, the interactive
 * shell, a shim, the proxy, a direct agent-socket client and replay gets
 *   - the same policy decision (a command the policy denies is refused by every entry point),
 *   - the same world: one session world (same key: limits, allowlist, project) for every
 *     session entry point, with the policy's limits; replay's fresh world has the same limits,
 *   - linked spans under one session id (policy events and the command span of one process;
 *     the agent's span names the host span as parent; the command sees its span's session).
 * Each drift measured on the old main (issue 17, "Drift measured") fails one of these.
 *
 * The direct agent-socket case needs the agent-side gate (docs/ARCHITECTURE.md "Where the
 * policy decision runs"); until the agent has it, that case is SKIPPED with a message.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_POLICY_YAML } from "../../src/broker/default-policy.ts";
import { hostArgv, startAgent, type TestAgent } from "../helpers/agent.ts";

const WLD = /wld_[0-9a-f-]{36}/;
const SES = /ses_[0-9a-f-]{36}/;

let agent!: TestAgent;
let dir!: string;
let home!: string;
let proj!: string;
let watchProj: string;
let shellProj: string;
let hostTrace: string;
let agentTrace: string;
let env: Record<string, string>;
let proxy: ReturnType<typeof Bun.spawn> | undefined;
let proxySock: string;

/** The test policy: enforce, a harmless denied pattern, its own limits and allowlist. */
const policy = (id: string, mode: "enforce" | "observe", extraDenied: string[] = []) =>
  DEFAULT_POLICY_YAML.replace(/^id: default$/m, `id: ${id}`)
    .replace(/^mode: observe.*$/m, `mode: ${mode}`)
    .replace('    - "sudo *"\n', ['    - "echo forbidden*"', ...extraDenied.map((d) => `    - "${d}"`), '    - "sudo *"', ""].join("\n"))
    .replace('cpu: "2"      # 2 CPUs', 'cpu: "1"')
    .replace('memory: "2Gi" # 2 GB RAM', 'memory: "1536Mi"')
    .replace(/  allowed:\n(    - .*\n)+/, "  allowed:\n    - example.com\n    - parity.invalid\n");

function substrate(args: string[], o: { cwd?: string; input?: string; env?: Record<string, string> } = {}) {
  const p = Bun.spawnSync([...hostArgv(), ...args], {
    cwd: o.cwd ?? proj,
    env: { ...env, ...o.env },
    stdin: o.input !== undefined ? new TextEncoder().encode(o.input) : "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: 90_000,
  });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

const spans = (file: string): Record<string, any>[] =>
  existsSync(file)
    ? readFileSync(file, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l))
    : [];

async function http(sock: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any; text: string }> {
  const r = await fetch(`http://localhost${path}`, { method, unix: sock, headers: body ? { "content-type": "application/json" } : {}, body: body ? JSON.stringify(body) : undefined } as RequestInit);
  const text = await r.text();
  let parsed: any = null;
  try {
    parsed = JSON.parse(text);
  } catch {}
  return { status: r.status, body: parsed, text };
}

/** The session world of the project, as the agent lists it. */
async function worldOf(id: string) {
  return (await agent.client.listWorlds()).find((w) => w.id === id);
}

// Set up at load time (not in beforeAll) so that the direct-socket case can be skipped by
// what the agent does, visibly, instead of passing vacuously.
await (async () => {
  dir = mkdtempSync(join(tmpdir(), "substrate-parity-"));
  home = join(dir, "home");
  hostTrace = join(dir, "host-trace.jsonl");
  agentTrace = join(dir, "agent-trace.jsonl");
  mkdirSync(join(home, ".substrate", "policies"), { recursive: true });
  writeFileSync(join(home, ".substrate", "policies", "default.yaml"), policy("default", "enforce"));
  writeFileSync(join(home, ".substrate", "policies", "watch.yaml"), policy("watch", "observe"));
  writeFileSync(join(home, ".substrate", "policies", "noshell.yaml"), policy("noshell", "enforce", ["bash -i"]));
  proj = join(dir, "proj");
  watchProj = join(dir, "watch");
  shellProj = join(dir, "noshell");
  for (const p of [proj, watchProj, shellProj]) mkdirSync(join(p, ".git"), { recursive: true });
  writeFileSync(join(watchProj, ".substrate-profile"), "watch\n");
  writeFileSync(join(shellProj, ".substrate-profile"), "noshell\n");
  agent = await startAgent({ env: { SUBSTRATE_TRACE: agentTrace } });
  env = {
    PATH: "/usr/local/bin:/usr/bin:/bin",
    HOME: home,
    LANG: "C.UTF-8",
    SHELL: "/bin/bash",
    SUBSTRATE_TRACE: hostTrace,
    SUBSTRATE_WORLD_SOCKET: agent.socket,
    SUBSTRATE_AGENT_ID: "parity",
  };
  proxySock = join(dir, "proxy", "agent.sock");
  proxy = Bun.spawn([...hostArgv(), "proxy", "--socket", proxySock, "--agent-socket", agent.socket, "--audit", "off"], { cwd: proj, env, stdout: "pipe", stderr: "pipe" });
  for (let i = 0; i < 200 && !existsSync(proxySock); i++) await Bun.sleep(25);
})();

afterAll(async () => {
  if (proxy) {
    proxy.kill("SIGTERM");
    await proxy.exited;
  }
  await agent?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("entry-point parity: one pipeline", () => {
  const PROBE = 'echo "WID=$SUBSTRATE_WORLD_ID SID=$SUBSTRATE_SESSION_ID SPN=$SUBSTRATE_SPAN_ID"';
  let cWorld = "";

  test("-c: the policy's world (limits) and a host span the agent's span names as parent", async () => {
    const r = substrate(["-c", PROBE]);
    expect(r.code).toBe(0);
    cWorld = WLD.exec(r.out)![0];
    const w = await worldOf(cWorld);
    expect(w?.limits).toMatchObject({ cpu: "1", memory: "1536Mi" });
    const sid = SES.exec(r.out)![0];
    const host = spans(hostTrace).filter((s) => s.event_type === "command_complete" && s.cmd === PROBE);
    expect(host.length).toBe(1);
    expect(host[0].session_id).toBe(sid); // the command sees its span's session
    const mine = spans(agentTrace).find((s) => s.parent_span === host[0].span_id);
    expect(mine?.session_id).toBe(sid);
  });

  test("--pty -c: the same session world, and a host command span (pty) under the command's session", () => {
    const r = substrate(["--pty", "-c", PROBE]);
    expect(r.code).toBe(0);
    expect(WLD.exec(r.out)?.[0]).toBe(cWorld);
    const sid = SES.exec(r.out)![0];
    const host = spans(hostTrace).filter((s) => s.event_type === "command_start" && s.cmd === PROBE && s.pty === true);
    expect(host.length).toBe(1);
    expect(host[0].session_id).toBe(sid);
  });

  test("--pty -c keeps --isolated (it runs isolated, without a PTY)", () => {
    const r = substrate(["--pty", "--isolated", "-c", "echo iso > iso-file"]);
    expect(r.code).toBe(0);
    expect(r.err).toContain("isolated");
    expect(existsSync(join(proj, "iso-file"))).toBe(false); // kept for `substrate apply`, not written
  });

  test("shell: the same session world, and a host command span the shell's commands run under", () => {
    const r = substrate(["shell", "--shell", "bash"], { input: `${PROBE}\nexit\n` });
    expect(r.code).toBe(0);
    const out = r.out.replace(/\r/g, "");
    expect(WLD.exec(out)?.[0]).toBe(cWorld);
    const sid = /SID=(ses_[0-9a-f-]{36})/.exec(out)![1];
    const spn = /SPN=(spn_[0-9a-f-]{36})/.exec(out)![1];
    const shellSpan = spans(hostTrace).find((s) => s.event_type === "command_start" && s.span_id === spn);
    expect(shellSpan).toMatchObject({ component: "shell", session_id: sid, pty: true });
  });

  test("proxy: the policy's world (not the caller's block), and the agent's span in the caller's session", async () => {
    const sid = `ses_${Bun.randomUUIDv7()}`;
    const r = await http(proxySock, "POST", "/v1/execute", { cmd: PROBE, cwd: proj, agent_id: "parity", env: { SUBSTRATE_SESSION_ID: sid }, world: { project_dir: proj, limits: { memory: "8Gi" }, allowed_domains: ["*"] } });
    expect(r.status).toBe(200);
    expect(WLD.exec(Buffer.from(r.body.stdout_b64, "base64").toString())?.[0]).toBe(cWorld);
    expect(spans(agentTrace).find((s) => s.span_id === r.body.span_id)?.session_id).toBe(sid);
  });

  test("one -c process writes its policy events and its command span under one session id", () => {
    const r = substrate(["-c", "echo forbidden-watch"], { cwd: watchProj }); // observe mode: logged, runs
    expect(r.code).toBe(0);
    const mine = spans(hostTrace).filter((s) => s.cmd === "echo forbidden-watch");
    expect(mine.map((s) => s.event_type).sort()).toEqual(["command_complete", "command_start", "policy_violation"]);
    expect(new Set(mine.map((s) => s.session_id)).size).toBe(1);
  });
});

describe("entry-point parity: one policy decision", () => {
  const DENIED = "echo forbidden-1";

  test("-c and --pty -c: denied (126), nothing runs", () => {
    for (const args of [["-c", DENIED], ["--pty", "-c", DENIED]]) {
      const r = substrate(args);
      expect(r.code).toBe(126);
      expect(r.out).not.toContain("forbidden-1");
      expect(r.err).toContain("denied by policy default");
    }
  });

  test("shim: denied (126)", () => {
    const r = substrate(["shim", "check", "--", "echo", "forbidden-1"]);
    expect(r.code).toBe(126);
  });

  test("proxy: denied (403), with the policy event in the caller's session", async () => {
    const sid = `ses_${Bun.randomUUIDv7()}`;
    const r = await http(proxySock, "POST", "/v1/execute", { cmd: DENIED, cwd: proj, agent_id: "parity", env: { SUBSTRATE_SESSION_ID: sid } });
    expect(r.status).toBe(403);
    expect(spans(hostTrace).find((s) => s.event_type === "policy_denied" && s.cmd === DENIED && s.component === "api")?.session_id).toBe(sid);
  });

  test("the interactive shell is gated too (a policy that denies `bash -i`)", () => {
    const r = substrate(["shell", "--shell", "bash"], { cwd: shellProj, input: "echo ran-the-shell\nexit\n" });
    expect(r.code).toBe(126);
    expect(r.out).not.toContain("ran-the-shell");
  });

  test("replay: a recorded command the policy now denies is refused (126), not re-run", () => {
    // recorded under the observe policy, replayed where the enforce policy is in force
    const rec = substrate(["-c", "echo forbidden-replay"], { cwd: watchProj });
    expect(rec.code).toBe(0);
    const span = spans(hostTrace).find((s) => s.event_type === "command_complete" && s.cmd === "echo forbidden-replay")!;
    writeFileSync(join(watchProj, ".substrate-profile"), "default\n");
    try {
      const r = substrate(["replay", span.span_id, "--json"], { cwd: proj });
      expect(r.code).toBe(126);
      expect(r.out).not.toContain("forbidden-replay\\n");
    } finally {
      writeFileSync(join(watchProj, ".substrate-profile"), "watch\n");
    }
  });

  test("replay: the policy's world limits apply to the fresh world", async () => {
    const cmd = "sleep 1.5; echo replayed";
    const rec = substrate(["-c", cmd]);
    expect(rec.code).toBe(0);
    const span = spans(hostTrace).find((s) => s.event_type === "command_complete" && s.cmd === cmd)!;
    const p = Bun.spawn([...hostArgv(), "replay", span.span_id, "--json"], { cwd: proj, env, stdout: "pipe", stderr: "pipe" });
    let limits: unknown;
    for (let i = 0; i < 100 && limits === undefined; i++) {
      const iso = (await agent.client.listWorlds()).find((w) => w.isolated && w.project_dir === proj);
      if (iso) limits = iso.limits ?? null;
      await Bun.sleep(50);
    }
    const code = await p.exited;
    const report = JSON.parse(await new Response(p.stdout).text());
    expect(code).toBe(0);
    expect(report.reproduced).toBe(true);
    expect(limits).toMatchObject({ cpu: "1", memory: "1536Mi" });
    // the replay belongs to the original span's session
    expect(spans(hostTrace).find((s) => s.event_type === "replay" && s.replay_of === span.span_id)?.session_id).toBe(span.session_id);
  });
});

const gates = (await http(agent.socket, "POST", "/v1/execute", { cmd: "echo forbidden-probe", cwd: proj, agent_id: "parity", env: { HOME: home } })).status === 403;
if (!gates) console.warn("SKIPPING the direct agent-socket parity case: the agent does not gate requests yet (agent-side hook: src/run/agent-gate.ts, docs/ARCHITECTURE.md)");

describe("entry-point parity: a client on the agent's own socket", () => {
  test.skipIf(!gates)("denied like every other entry point (403), and run in the policy's world", async () => {
    const r = await http(agent.socket, "POST", "/v1/execute", { cmd: "echo $SUBSTRATE_WORLD_ID", cwd: proj, agent_id: "parity", env: { HOME: home } });
    expect(r.status).toBe(200);
    expect(WLD.exec(Buffer.from(r.body.stdout_b64, "base64").toString())?.[0]).toBe((await agent.client.listWorlds()).find((w) => !w.isolated && w.project_dir === proj)?.id);
  });
});
