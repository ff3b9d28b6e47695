/**
 * The spec's Agent API acceptance list against a real world agent (real worlds, real
 * memfd seals, real kills):
 * - Returns {exit, span_id, stdout_b64, stderr_b64, scopes_used}
 * - Calls without agent_id rejected with a clear error
 * - Budget exhaustion returns a 429 error + `rate_limit` span
 * - Scope tokens passed via sealed FD, not environment strings
 * - Per-agent budget tracking with atomic decrements
 * (PTY byte-cleanliness: stream.test.ts; proxy parity: proxy.test.ts.)
 */
import { approveSocketFor } from "../../src/api/approver.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { ApprovalRequiredBody, BudgetStatus, Capabilities, ErrorBody, ExecuteResponse, RequestScopesResponse, ScopeToken, Span } from "../../src/contract/index.ts";
import { b64, http, pidsMentioning, spansIn, startSourceAgent, tempProject, worldDirs, type ApiAgent } from "./api-helpers.ts";

let agent: ApiAgent;
let proj: string;
const exec = (body: Record<string, unknown>) => http(agent.socket, "POST", "/v1/execute", { cwd: proj, ...body });

beforeAll(async () => {
  proj = tempProject();
  agent = await startSourceAgent();
});
afterAll(async () => {
  const pid = agent.pid;
  const state = agent.stateDir;
  await agent.stop();
  rmSync(proj, { recursive: true, force: true });
  expect(pidsMentioning(state)).toEqual([]); // no world left running
  expect(worldDirs(state)).toEqual([]);
  expect(pidsMentioning(String(pid)).filter((p) => p === pid)).toEqual([]);
});

describe("POST /v1/execute", () => {
  test("returns {exit, span_id, stdout_b64, stderr_b64, scopes_used} (+ world_id); SUBSTRATE_AGENT_ID is set", async () => {
    const r = await exec({ cmd: 'echo "out:$SUBSTRATE_AGENT_ID"; echo err >&2; exit 7', agent_id: "claude" });
    expect(r.status).toBe(200);
    const body = ExecuteResponse.parse(r.body);
    // + egress (issue 15): the world's gateway counted the command's bytes and blocked names
    expect(Object.keys(r.body).sort()).toEqual(["egress", "exit", "scopes_used", "span_id", "stderr_b64", "stdout_b64", "world_id"]);
    expect(body.exit).toBe(7);
    expect(b64(body.stdout_b64)).toBe("out:claude\n");
    expect(b64(body.stderr_b64)).toBe("err\n");
    expect(body.scopes_used).toEqual([]);
  });

  test.each([
    ["missing", {}],
    ["empty", { agent_id: "" }],
    ["blank", { agent_id: "   " }],
    ["wrong type", { agent_id: 42 }],
  ])("agent_id %s → 400 with a clear error", async (_name, extra) => {
    const r = await exec({ cmd: "true", ...extra });
    expect(r.status).toBe(400);
    const e = ErrorBody.parse(r.body);
    expect(e.error.code).toBe("bad_request");
    expect(e.error.message).toContain("agent_id");
    expect(e.error.message).toContain("required");
  });
});

describe("budgets", () => {
  test("max_execs exhausted → 429 rate_limited + a rate_limit span, readable at GET /v1/trace/:span_id", async () => {
    const budget = { max_execs: 2 };
    expect((await exec({ cmd: "true", agent_id: "b-execs", budget })).status).toBe(200);
    expect((await exec({ cmd: "true", agent_id: "b-execs" })).status).toBe(200); // budget sticks to the agent
    const r = await exec({ cmd: "echo third", agent_id: "b-execs", budget: { max_execs: 100 } }); // cannot be loosened
    expect(r.status).toBe(429);
    const e = ErrorBody.parse(r.body);
    expect(e.error.code).toBe("rate_limited");
    expect(e.error.message).toBe("budget exhausted for agent b-execs: max_execs (2 of 2 used)");
    const spanId = /rate_limit span (spn_[0-9a-f-]{36})/.exec(e.error.hint ?? "")?.[1];
    expect(spanId).toBeDefined();
    const spans = (await spansIn(agent.trace)).filter((s) => s.event_type === "rate_limit" && s.agent_id === "b-execs");
    expect(spans.length).toBe(1);
    expect(Span.parse(spans[0]).span_id).toBe(spanId!);
    expect(spans[0].reason).toBe("max_execs: 2 of 2 used");
    const t = await http(agent.socket, "GET", `/v1/trace/${spanId}`);
    expect(t.status).toBe(200);
    expect(Span.parse(t.body)).toMatchObject({ event_type: "rate_limit", component: "api", cmd: "echo third" });

    const st = await http(agent.socket, "GET", "/v1/budgets/b-execs");
    expect(BudgetStatus.parse(st.body)).toMatchObject({ budget: { max_execs: 2 }, used: { execs: 2 }, remaining: { max_execs: 0 }, exhausted: ["max_execs"] });
  });

  test("atomic decrements: 24 concurrent executes against max_execs 5 → exactly 5 run", async () => {
    const rs = await Promise.all(Array.from({ length: 24 }, () => exec({ cmd: "true", agent_id: "b-race", budget: { max_execs: 5 } })));
    expect(rs.filter((r) => r.status === 200).length).toBe(5);
    expect(rs.filter((r) => r.status === 429).length).toBe(19);
    expect((await spansIn(agent.trace)).filter((s) => s.event_type === "rate_limit" && s.agent_id === "b-race").length).toBe(19);
  });

  test("max_runtime_ms kills the command that exceeds it, then refuses the agent", async () => {
    const marker = `runtime-${Bun.randomUUIDv7()}`;
    const r = await exec({ cmd: `exec -a ${marker} sleep 60`, agent_id: "b-runtime", budget: { max_runtime_ms: 400 } });
    expect(r.status).toBe(200);
    const body = ExecuteResponse.parse(r.body);
    expect(body.exit).toBe(137); // SIGKILL
    expect(pidsMentioning(marker)).toEqual([]);
    const again = await exec({ cmd: "true", agent_id: "b-runtime" });
    expect(again.status).toBe(429);
    expect(again.body.error.message).toStartWith("budget exhausted for agent b-runtime: max_runtime_ms");
  });

  test("budgets are per agent: another agent is unaffected", async () => {
    expect((await exec({ cmd: "true", agent_id: "b-other" })).status).toBe(200);
    expect((await http(agent.socket, "GET", "/v1/budgets/b-other")).status).toBe(404);
  });
});

describe("scope tokens", () => {
  test("token arrives on a sealed memfd (fd 3, all four seals), never in the environment, and the spawner keeps no copy", async () => {
    const script = [
      'echo "fd=$SUBSTRATE_SCOPE_FD"',
      'readlink /proc/self/fd/3',
      "cat <&3",
      // every seal holds: no write, no truncate (a fresh writable open is refused too)
      'if printf x >&3 2>/dev/null; then echo write=ok; else echo write=refused; fi',
      'if truncate -s 0 /proc/self/fd/3 2>/dev/null; then echo shrink=ok; else echo shrink=refused; fi',
      'if env | grep -q sct_; then echo env=leak; else echo env=clean; fi',
      // the spawner (`__world`) holds no copy after the exec
      'for p in /proc/[0-9]*; do if tr "\\0" " " < $p/cmdline 2>/dev/null | grep -q __world; then ls -l $p/fd | grep -c substrate-scope; fi; done',
    ].join("; ");
    const r = await exec({ cmd: script, agent_id: "scoped" });
    expect(r.status).toBe(200);
    const out = b64(r.body.stdout_b64).split("\n");
    expect(out[0]).toBe("fd=3");
    expect(out[1]).toStartWith("/memfd:substrate-scope");
    const token = ScopeToken.parse(JSON.parse(out[2]!));
    expect(token.agent_id).toBe("scoped");
    expect(token.span_id).toBe(r.body.span_id);
    expect(token.world_id).toBe(r.body.world_id);
    expect(out.slice(3, 6)).toEqual(["write=refused", "shrink=refused", "env=clean"]);
    expect(out[6]).toBe("0");
  });

  test("sealsOf reports F_SEAL_SEAL|SHRINK|GROW|WRITE on the memfd we build", async () => {
    const { sealedScopeFd, sealsOf, ALL_SEALS } = await import("../../agent/scopes.ts");
    const fd = sealedScopeFd('{"x":1}\n');
    try {
      expect(sealsOf(fd)).toBe(ALL_SEALS);
      expect(ALL_SEALS).toBe(0xf);
    } finally {
      (await import("node:fs")).closeSync(fd);
    }
  });

  // Issue 18.5: answered on the approver socket beside the API socket (the API socket answers 403).
  const approve = (id: string, choice: string) => http(approveSocketFor(agent.socket), "POST", `/v1/approvals/${id}`, { choice });

  test("request_scopes → 409 approval_required; approve(session) → granted; executes carry the scopes", async () => {
    const ask = await http(agent.socket, "POST", "/v1/request_scopes", { agent_id: "scoper", scopes: ["net:example.com:443"], reason: "fetch deps" });
    expect(ask.status).toBe(409);
    const body = ApprovalRequiredBody.parse(ask.body);
    expect(body.error.code).toBe("approval_required");
    expect(body.approval.command).toBe("request_scopes net:example.com:443");
    expect((await http(agent.socket, "POST", "/v1/request_scopes/approve", { approval_id: body.approval.approval_id, choice: "session" })).status).toBe(403);
    const ok = await approve(body.approval.approval_id, "session");
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual({ approval_id: body.approval.approval_id, choice: "session", kind: "scopes", agent_id: "scoper", granted: ["net:example.com:443"] });
    expect(RequestScopesResponse.parse((await http(agent.socket, "POST", "/v1/request_scopes", { agent_id: "scoper", scopes: ["net:example.com:443"] })).body)).toEqual({ agent_id: "scoper", granted: ["net:example.com:443"], scopes: ["net:example.com:443"] });
    // already held → 200 without approval
    expect((await http(agent.socket, "POST", "/v1/request_scopes", { agent_id: "scoper", scopes: ["net:example.com:443"] })).status).toBe(200);
    const r = await exec({ cmd: "cat <&3", agent_id: "scoper" });
    expect(r.body.scopes_used).toEqual(["net:example.com:443"]);
    expect(ScopeToken.parse(JSON.parse(b64(r.body.stdout_b64))).scopes).toEqual(["net:example.com:443"]);
    // answered approvals are gone; a deny grants nothing
    expect((await approve(body.approval.approval_id, "once")).status).toBe(404);
    const ask2 = await http(agent.socket, "POST", "/v1/request_scopes", { agent_id: "scoper", scopes: ["fs.write:/etc"] });
    const denied = await approve(ask2.body.approval.approval_id, "deny");
    expect(denied.status).toBe(200);
    expect(denied.body.granted).toEqual([]);
    expect((await http(agent.socket, "POST", "/v1/request_scopes", { agent_id: "scoper", scopes: ["fs.write:/etc"] })).status).toBe(409);
  });

  test("a `once` grant lasts one command", async () => {
    const ask = await http(agent.socket, "POST", "/v1/request_scopes", { agent_id: "oncer", scopes: ["exec:git"] });
    await approve(ask.body.approval.approval_id, "once");
    expect((await exec({ cmd: "true", agent_id: "oncer" })).body.scopes_used).toEqual(["exec:git"]);
    expect((await exec({ cmd: "true", agent_id: "oncer" })).body.scopes_used).toEqual([]);
  });

  test("malformed scopes → 400", async () => {
    const r = await http(agent.socket, "POST", "/v1/request_scopes", { agent_id: "x", scopes: ["root"] });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toContain("KIND:TARGET");
  });
});

describe("other routes", () => {
  test("GET /v1/capabilities advertises the issue-6 API features", async () => {
    const r = await http(agent.socket, "GET", "/v1/capabilities");
    expect(Capabilities.parse(r.body).api).toEqual({ stream: true, stream_detach: true, budgets: true, scope_fd: true, request_scopes: true, trace: true });
  });

  test("GET /v1/trace: bad id 400, unknown 404; GET /v1/stream without upgrade 400", async () => {
    expect((await http(agent.socket, "GET", "/v1/trace/nope")).status).toBe(400);
    const unknown = await http(agent.socket, "GET", `/v1/trace/spn_${Bun.randomUUIDv7()}`);
    expect(unknown.status).toBe(404);
    expect(ErrorBody.parse(unknown.body).error.code).toBe("not_found");
    const s = await http(agent.socket, "GET", "/v1/stream");
    expect(s.status).toBe(400);
    expect(s.body.error.message).toContain("WebSocket");
  });
});
