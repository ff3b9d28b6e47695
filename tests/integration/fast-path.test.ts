/**
 * The CLI's fast path (src/cli/fast.ts, issue 17 "The hot path"): a plain `substrate -c CMD …`
 * goes straight to the agent's /v1/stream with `host_span`; the agent's gate (as the caller,
 * agent/policyd.ts) decides as the host would and writes the host's spans into the caller's
 * trace. Everything else falls back to the full pipeline, which must then behave exactly as
 * it always did. The real binary, a real agent, a throwaway user (its passwd home holds its
 * policies, as on a real machine).
 *
 * Which path ran is read from SUBSTRATE_TIMING's marks (`fast=` … `started=` for the fast
 * path; `pipeline=` once the pipeline took over) — never from how long anything took.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_POLICY_YAML } from "../../src/broker/default-policy.ts";
import { hostArgv, startAgent, type TestAgent } from "../helpers/agent.ts";
import { runnable } from "../helpers/runnable.ts";
import { apiAs, createUser, openSocket, type TestUser } from "../security/_users.ts";

let agent!: TestAgent;
let user!: TestUser;
let cli!: string[];
let proj!: string;
let hostTrace!: string;
let agentTrace!: string;
let env!: Record<string, string>;

/** enforce; `echo forbidden*` denied, `echo ask-me*` needs an approval, `echo iso-me*` isolated */
const POLICY = DEFAULT_POLICY_YAML.replace(/^mode: observe.*$/m, "mode: enforce")
  .replace('    - "sudo *"\n', '    - "echo forbidden*"\n    - "sudo *"\n')
  .replace('    - "pip install *"\n', '    - "echo iso-me*"\n    - "pip install *"\n')
  .replace(/^commands:\n/m, 'commands:\n  require_approval:\n    - "echo ask-me*"\n');

const asUser = (argv: string[], e: Record<string, string>): string[] => [
  "setpriv", `--reuid=${user.uid}`, `--regid=${user.gid}`, "--init-groups", "--", "env", "-i", ...Object.entries(e).map(([k, v]) => `${k}=${v}`), ...argv,
];

interface Ran {
  code: number | null;
  out: string;
  err: string;
  /** the fast path ran the command (no `pipeline=` mark) */
  fast: boolean;
  /** the pipeline ran it (the fast path fell back, or was never tried) */
  pipeline: boolean;
}

const parse = (code: number | null, out: string, err: string): Ran => {
  const marks = /substrate-timing: (.*)/.exec(err)?.[1] ?? "";
  return { code, out, err: err.replace(/substrate-timing: .*\n/, ""), fast: /\bstarted=/.test(marks) && !/\bpipeline=/.test(marks), pipeline: /\bpipeline=/.test(marks) };
};

function substrate(args: string[], o: { input?: string; env?: Record<string, string> } = {}): Ran {
  const p = Bun.spawnSync(asUser([...cli, ...args], { ...env, ...o.env }), {
    cwd: proj,
    stdin: o.input !== undefined ? new TextEncoder().encode(o.input) : "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: 90_000,
  });
  return parse(p.exitCode, p.stdout.toString(), p.stderr.toString());
}

const spans = (file: string): Record<string, any>[] =>
  existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l)) : [];

await (async () => {
  user = createUser("sbfast");
  hostTrace = join(user.home, "host-trace.jsonl");
  agentTrace = join(user.home, "..", "agent-trace.jsonl");
  mkdirSync(join(user.home, ".substrate", "policies"), { recursive: true });
  writeFileSync(join(user.home, ".substrate", "policies", "default.yaml"), POLICY);
  proj = join(user.home, "proj");
  mkdirSync(join(proj, ".git"), { recursive: true });
  writeFileSync(join(proj, ".git", "HEAD"), "ref: refs/heads/main\n");
  Bun.spawnSync(["chown", "-R", `${user.uid}:${user.gid}`, user.home]);
  agent = await startAgent({ env: { SUBSTRATE_TRACE: agentTrace } });
  openSocket(agent.socket);
  cli = hostArgv().map((a) => (a.startsWith("/") ? runnable(a) : a));
  env = {
    PATH: "/usr/local/bin:/usr/bin:/bin",
    HOME: user.home,
    USER: user.name,
    LANG: "C.UTF-8",
    SUBSTRATE_TRACE: hostTrace,
    SUBSTRATE_WORLD_SOCKET: agent.socket,
    SUBSTRATE_TIMING: "1",
  };
})();

afterAll(async () => {
  await agent?.stop();
  user?.remove();
});

describe("fast path: a plain -c", () => {
  test("runs in the world: stdout and stderr apart, the exit code, ARG0 and ARGs", () => {
    const r = substrate(["-c", 'echo "out $0 $1 $SUBSTRATE_WORLD"; echo err >&2; exit 3', "a0", "a1"]);
    expect(r.fast).toBe(true);
    expect(r.code).toBe(3);
    expect(r.out).toBe("out a0 a1 enabled\n");
    expect(r.err).toBe("err\n");
  });

  test("the host's spans, once each, written as the caller: command_start/complete linked to the agent's span", () => {
    const cmd = "echo span-check";
    const r = substrate(["-c", cmd]);
    expect(r.fast).toBe(true);
    expect(r.code).toBe(0);
    const mine = spans(hostTrace).filter((s) => s.cmd === cmd);
    expect(mine.map((s) => s.event_type).sort()).toEqual(["command_complete", "command_start"]);
    const [start, done] = [mine.find((s) => s.event_type === "command_start")!, mine.find((s) => s.event_type === "command_complete")!];
    expect(start.span_id).toBe(done.span_id);
    expect(done).toMatchObject({ component: "shell", exit: 0, agent_id: "human", cwd: proj, policy_id: "default" });
    expect(done.world_id).toMatch(/^wld_/);
    expect(done.replay_context).toMatchObject({ cwd: proj, path: env.PATH, locale: "C.UTF-8", policy_id: "default" });
    // the agent's own span of it names the host span as parent, in the same session
    const agentSpan = spans(agentTrace).find((s) => s.parent_span === done.span_id);
    expect(agentSpan?.session_id).toBe(done.session_id);
    // the caller's file, written by the caller (never root into a user's home)
    const st = Bun.spawnSync(["stat", "-c", "%u", hostTrace], { stdout: "pipe" });
    expect(Number(st.stdout.toString().trim())).toBe(user.uid);
  });

  test("a nested call's spans name the outer span and keep its session", () => {
    const parent = `spn_${Bun.randomUUIDv7()}`;
    const session = `ses_${Bun.randomUUIDv7()}`;
    const r = substrate(["-c", "echo nested-check"], { env: { SUBSTRATE_SPAN_ID: parent, SUBSTRATE_SESSION_ID: session } });
    expect(r.fast).toBe(true);
    const done = spans(hostTrace).find((s) => s.cmd === "echo nested-check" && s.event_type === "command_complete");
    expect(done).toMatchObject({ parent_span: parent, session_id: session });
  });

  test("piped stdin reaches the command (as it arrives, then EOF)", () => {
    const r = substrate(["-c", "cat; echo end"], { input: "hi\nthere\n" });
    expect(r.fast).toBe(true);
    expect(r.out).toBe("hi\nthere\nend\n");
  });

  test("a signal to the CLI reaches the command (its trap runs; its exit code is ours)", async () => {
    const p = Bun.spawn(asUser([...cli, "-c", 'trap "echo got-term; exit 7" TERM; echo ready; sleep 30 & wait'], env), { cwd: proj, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    const reader = (p.stdout as ReadableStream<Uint8Array>).getReader();
    let out = "";
    while (!out.includes("ready")) {
      const { value, done } = await reader.read();
      if (done) break;
      out += new TextDecoder().decode(value);
    }
    expect(out).toContain("ready");
    // setpriv and env exec: the pid is the CLI's
    p.kill("SIGTERM");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out += new TextDecoder().decode(value);
    }
    expect(await p.exited).toBe(7);
    expect(out).toContain("got-term");
    expect(parse(7, out, await new Response(p.stderr).text()).fast).toBe(true);
  });

  test.skipIf(hostArgv().length > 1)("the bash shim (argv[0] `bash`): the same fast path, bash's $0", () => {
    const shims = join(user.home, "shims");
    mkdirSync(shims, { recursive: true });
    symlinkSync(cli[0]!, join(shims, "bash"));
    Bun.spawnSync(["chown", "-R", `${user.uid}:${user.gid}`, shims]);
    const p = Bun.spawnSync(asUser([join(shims, "bash"), "-c", 'echo "$0 $SUBSTRATE_WORLD"'], { ...env, PATH: `${shims}:${env.PATH}` }), { cwd: proj, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    const r = parse(p.exitCode, p.stdout.toString(), p.stderr.toString());
    expect(r.fast).toBe(true);
    expect(r.code).toBe(0);
    expect(r.out).toBe("bash enabled\n");
  });

  test("a command killed by a signal exits 128+N", () => {
    const r = substrate(["-c", "kill -9 $$"]);
    expect(r.fast).toBe(true);
    expect(r.code).toBe(137);
  });
});

describe("fast path: falls back to the pipeline, which behaves as always", () => {
  test("denied: 126, the pipeline's message, nothing ran, the policy event once", () => {
    const r = substrate(["-c", "echo forbidden-fast"]);
    expect(r.pipeline).toBe(true);
    expect(r.code).toBe(126);
    expect(r.out).toBe("");
    expect(r.err).toContain("denied by policy default");
    const mine = spans(hostTrace).filter((s) => s.cmd === "echo forbidden-fast");
    expect(mine.map((s) => s.event_type)).toEqual(["policy_denied"]);
  });

  test("approval needed without a terminal: the pipeline's refusal and hint (126), nothing ran", () => {
    const r = substrate(["-c", "echo ask-me-now"]);
    expect(r.pipeline).toBe(true);
    expect(r.code).toBe(126);
    expect(r.out).toBe("");
    expect(r.err).toContain("stdin is not a terminal to ask on");
    const kinds = spans(hostTrace).filter((s) => s.cmd === "echo ask-me-now").map((s) => s.event_type).sort();
    expect(kinds).toEqual(["approval", "policy_denied"]);
  });

  test("isolated by the policy: the pipeline runs it in an overlay world (its summary line), the project untouched", () => {
    const r = substrate(["-c", "echo iso-me > iso-file"]);
    expect(r.pipeline).toBe(true);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/substrate: isolated: /);
    expect(existsSync(join(proj, "iso-file"))).toBe(false);
  });

  test("--isolated, --no-world and bash's other forms never take the fast path", () => {
    expect(substrate(["--isolated", "-c", "echo x > iso2"]).fast).toBe(false);
    const h = substrate(["--no-world", "-c", "echo $SUBSTRATE_WORLD"]);
    expect(h.fast).toBe(false);
    expect(h.out).toBe("disabled\n");
    const l = substrate(["-lc", "echo login"]);
    expect(l.fast).toBe(false);
    expect(l.out).toContain("login");
  });

  test("no agent listening: the pipeline's own answer (here: a warning, then the host)", () => {
    const r = substrate(["-c", "echo on-$SUBSTRATE_WORLD"], { env: { SUBSTRATE_WORLD_SOCKET: join(user.home, "no-agent.sock") } });
    expect(r.fast).toBe(false);
    expect(r.pipeline).toBe(true);
    expect(r.code).toBe(0);
    expect(r.out).toBe("on-disabled\n");
    expect(r.err).toContain("world unavailable");
  });

  test("a HOME that is not the passwd home: the pipeline (the agent reads the passwd home's policy)", () => {
    const other = join(user.home, "other-home");
    mkdirSync(other, { recursive: true });
    Bun.spawnSync(["chown", `${user.uid}:${user.gid}`, other]);
    const r = substrate(["-c", "echo other-home"], { env: { HOME: other } });
    expect(r.fast).toBe(false);
    expect(r.code).toBe(0);
    expect(r.out).toBe("other-home\n");
  });
});

describe("the agent's gate answers (API executes)", () => {
  test("a reused answer never outlives the policy it came from: an edit applies once the helper's one-second policy cache is past", async () => {
    const body = { cmd: "echo reuse-me", cwd: proj, agent_id: "fast" };
    for (let i = 0; i < 3; i++) expect(apiAs(user, agent.socket, "POST", "/v1/execute", body).status).toBe(200);
    const file = join(user.home, ".substrate", "policies", "default.yaml");
    writeFileSync(file, POLICY.replace('    - "echo forbidden*"\n', '    - "echo forbidden*"\n    - "echo reuse-me*"\n'));
    try {
      await Bun.sleep(1200); // the documented window (agent/policyd.ts POLICY_CACHE_MS), not a timing assertion
      expect(apiAs(user, agent.socket, "POST", "/v1/execute", body).status).toBe(403);
    } finally {
      writeFileSync(file, POLICY);
    }
  });
});
