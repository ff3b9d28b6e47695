/**
 * The host proxy against a real world agent:
 * - parity (spec acceptance "Host-proxy responses/semantics match world-agent for all /v1
 *   endpoints"): one API suite runs against the agent socket and the proxy socket; the
 *   answers must be identical once ids are masked.
 * - socket modes, SO_PEERCRED (a different uid is refused even when file modes would let
 *   it in), TCP loopback with a bearer token, audit JSONL, traceparent propagation,
 *   proxy-side budgets (enforced in both places) and rate limits, the WebSocket bridge.
 */
import { approveSocketFor } from "../../src/api/approver.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuditLine } from "../../src/contract/index.ts";
import { startProxy, ProxyError, type RunningProxy } from "../../src/proxy/server.ts";
import { eventually, http, openStream, spansIn, startSourceAgent, tempProject, worldDirs, type ApiAgent } from "./api-helpers.ts";

let agent: ApiAgent;
let proxy: RunningProxy;
let proj: string;
let dir: string;
let audit: string;
let hostTrace: string;

const savedTrace = process.env.SUBSTRATE_TRACE;
beforeAll(async () => {
  proj = tempProject();
  process.env.SUBSTRATE_TRACE = join(tmpdir(), `substrate-proxy-policy-${process.pid}.jsonl`); // policy events of the gate
  dir = mkdtempSync(join(tmpdir(), "substrate-proxy-"));
  audit = join(dir, "audit.jsonl");
  hostTrace = join(dir, "host-trace.jsonl");
  agent = await startSourceAgent();
  proxy = await startProxy({ socketPath: join(dir, "sock", "agent.sock"), agentSocket: agent.socket, auditPath: audit, tracePath: hostTrace });
});
afterAll(async () => {
  await proxy.close();
  const state = agent.stateDir;
  await agent.stop();
  expect(worldDirs(state)).toEqual([]);
  rmSync(proj, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
  rmSync(process.env.SUBSTRATE_TRACE!, { force: true });
  if (savedTrace === undefined) delete process.env.SUBSTRATE_TRACE;
  else process.env.SUBSTRATE_TRACE = savedTrace;
});

/** Masks what legitimately differs between the two sockets: ids, the target tag, clocks. */
function normalize(v: unknown, tag: string): string {
  return JSON.stringify(v, (k, x) => (k === "uptime_ms" || k === "age_ms" || k === "runtime_ms" || k === "duration_ms" || k === "issued_at" ? 0 : x))
    .replace(/\b(spn|wld|apr|pty|sct|ses)_[0-9a-f-]{36}\b/g, "$1_ID")
    .replaceAll(tag, "@T");
}

type Case = [name: string, run: (sock: string, tag: string) => Promise<unknown>];
const raw = async (sock: string, method: string, path: string, body?: unknown, headers?: Record<string, string>) => {
  const r = await http(sock, method, path, body, headers);
  return { status: r.status, body: r.body ?? r.text, type: r.headers.get("content-type") };
};

const cases: Case[] = [
  ["capabilities", async (s) => {
    const r = await raw(s, "GET", "/v1/capabilities");
    return { ...r, body: { ...(r.body as object), worlds: null } };
  }],
  ["execute ok", (s, t) => raw(s, "POST", "/v1/execute", { cmd: 'echo hi; [ -n "$SUBSTRATE_AGENT_ID" ] && echo agent-id-set >&2; exit 3', cwd: proj, agent_id: `p${t}` })],
  ["execute argv", (s, t) => raw(s, "POST", "/v1/execute", { argv: ["/bin/echo", "a b"], cwd: proj, agent_id: `p${t}` })],
  ["execute without agent_id", (s) => raw(s, "POST", "/v1/execute", { cmd: "true", cwd: proj })],
  ["execute empty agent_id", (s) => raw(s, "POST", "/v1/execute", { cmd: "true", cwd: proj, agent_id: "" })],
  ["execute cmd and argv", (s, t) => raw(s, "POST", "/v1/execute", { cmd: "true", argv: ["true"], cwd: proj, agent_id: `p${t}` })],
  ["execute unknown field", (s, t) => raw(s, "POST", "/v1/execute", { cmd: "true", cwd: proj, agent_id: `p${t}`, nope: 1 })],
  ["execute bad cwd", (s, t) => raw(s, "POST", "/v1/execute", { cmd: "true", cwd: "/no/such/dir", agent_id: `p${t}` })],
  ["execute relative cwd", (s, t) => raw(s, "POST", "/v1/execute", { cmd: "true", cwd: "rel", agent_id: `p${t}` })],
  ["execute bad json", (s) => raw(s, "POST", "/v1/execute", "{nope")],
  ["execute empty body", (s) => raw(s, "POST", "/v1/execute", "")],
  ["execute invalid utf-8", (s) => raw(s, "POST", "/v1/execute", new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]))],
  ["execute array body", (s) => raw(s, "POST", "/v1/execute", [1, 2])],
  ["execute too large", (s) => raw(s, "POST", "/v1/execute", "x".repeat(9 * 1024 * 1024))],
  ["execute missing command", (s, t) => raw(s, "POST", "/v1/execute", { cwd: proj, agent_id: `p${t}` })],
  ["execute NDJSON stream", async (s, t) => {
    const r = await http(s, "POST", "/v1/execute", { cmd: "echo one; echo two >&2; exit 2", cwd: proj, agent_id: `p${t}`, stream: true });
    return { status: r.status, frames: r.text.split("\n").filter(Boolean).map((l) => JSON.parse(l)) };
  }],
  ["budget exhaustion", async (s, t) => {
    const out = [];
    for (let i = 0; i < 3; i++) out.push(await raw(s, "POST", "/v1/execute", { cmd: "true", cwd: proj, agent_id: `budget${t}`, budget: { max_execs: 2 } }));
    return out;
  }],
  ["budget status", (s, t) => raw(s, "GET", `/v1/budgets/budget${t}`)],
  ["budget unknown", (s, t) => raw(s, "GET", `/v1/budgets/none${t}`)],
  ["unknown route", (s) => raw(s, "GET", "/v1/nope")],
  ["unversioned route", (s) => raw(s, "GET", "/capabilities")],
  ["wrong method", (s) => raw(s, "PUT", "/v1/execute", {})],
  ["stream without upgrade", (s) => raw(s, "GET", "/v1/stream")],
  ["trace bad id", (s) => raw(s, "GET", "/v1/trace/xyz")],
  ["trace unknown", (s) => raw(s, "GET", "/v1/trace/spn_01a201cc-48ac-717a-bf2d-ef524a961adc")],
  ["request_scopes invalid", (s, t) => raw(s, "POST", "/v1/request_scopes", { agent_id: `p${t}`, scopes: [] })],
  ["request_scopes → 409", (s, t) => raw(s, "POST", "/v1/request_scopes", { agent_id: `sc${t}`, scopes: ["net:example.com"] })],
  ["approve unknown", (s) => raw(s, "POST", "/v1/request_scopes/approve", { approval_id: "apr_01a201cc-48ac-717a-bf2d-ef524a961adc", choice: "once" })],
  ["approve bad choice", (s) => raw(s, "POST", "/v1/request_scopes/approve", { approval_id: "x", choice: "maybe" })],
  ["scope approval round trip", async (s, t) => {
    const ask = await http(s, "POST", "/v1/request_scopes", { agent_id: `rt${t}`, scopes: ["exec:git"] });
    // issue 18.5: 403 on the API socket (agent and proxy alike); the human answers on the agent's approver socket
    const refused = await raw(s, "POST", "/v1/request_scopes/approve", { approval_id: ask.body.approval.approval_id, choice: "session" });
    const ok = [refused, await raw(approveSocketFor(agent.socket), "POST", `/v1/approvals/${ask.body.approval.approval_id}`, { choice: "session" })];
    const ex = await raw(s, "POST", "/v1/execute", { cmd: "true", cwd: proj, agent_id: `rt${t}` });
    return [ok, (ex.body as { scopes_used: string[] }).scopes_used];
  }],
  ["delete unknown world", (s) => raw(s, "DELETE", "/v1/worlds/wld_01a201cc-48ac-717a-bf2d-ef524a961adc")],
  ["ws: pty session", async (s, t) => {
    const c = await openStream(s, { cmd: "printf 'x\\0y'; echo; exit 9", cwd: proj, agent_id: `ws${t}` });
    const exit = await c.exit();
    return { exit, out: c.bytes().toString("base64"), msgs: c.messages.map((m) => m.type) };
  }],
  ["ws: missing agent_id", async (s) => {
    const c = await openStream(s, { cmd: "true", cwd: proj });
    return { close: await c.closed, msgs: c.messages };
  }],
  ["ws: budget 429", async (s, t) => {
    const a = await openStream(s, { cmd: "true", cwd: proj, agent_id: `wsb${t}`, budget: { max_execs: 1 } });
    await a.exit();
    const b = await openStream(s, { cmd: "true", cwd: proj, agent_id: `wsb${t}` });
    return { close: await b.closed, msgs: b.messages };
  }],
];

describe("parity: agent socket vs proxy socket", () => {
  for (const [name, run] of cases) {
    test(name, async () => {
      const direct = normalize(await run(agent.socket, "@agent"), "@agent");
      const proxied = normalize(await run(proxy.socketPath, "@proxy"), "@proxy");
      expect(proxied).toBe(direct);
    });
  }
});

describe("proxy middleware", () => {
  test("socket 0600 in a 0700 directory", () => {
    expect(statSync(proxy.socketPath).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "sock")).mode & 0o777).toBe(0o700);
  });

  test("SO_PEERCRED: another uid is refused (403 JSON) even when file modes let it connect", async () => {
    chmodSync(dir, 0o755);
    chmodSync(join(dir, "sock"), 0o755);
    chmodSync(proxy.socketPath, 0o666);
    try {
      const p = Bun.spawn(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "curl", "-s", "-w", "\n%{http_code}", "--unix-socket", proxy.socketPath, "http://localhost/v1/capabilities"], { stdout: "pipe", stderr: "pipe" });
      const out = (await new Response(p.stdout).text()).trim().split("\n");
      expect(await p.exited).toBe(0);
      expect(out.at(-1)).toBe("403");
      const body = JSON.parse(out.slice(0, -1).join("\n"));
      expect(body.error.code).toBe("denied");
      expect(body.error.message).toContain("peer uid 65534");
    } finally {
      chmodSync(proxy.socketPath, 0o600);
      chmodSync(join(dir, "sock"), 0o700);
      chmodSync(dir, 0o700);
    }
    // the audit stream is written asynchronously
    await eventually(async () => {
      const lines = readFileSync(audit, "utf8").trim().split("\n").map((l) => AuditLine.parse(JSON.parse(l)));
      expect(lines.some((l) => l.auth === "denied" && l.peer?.uid === 65534 && l.status === 403)).toBe(true);
    });
  });

  test("audit log: one valid line per request, with peer, agent_id and traceparent", async () => {
    await http(proxy.socketPath, "POST", "/v1/execute", { cmd: "true", cwd: proj, agent_id: "audited" });
    const read = () => readFileSync(audit, "utf8").trim().split("\n").map((l) => AuditLine.parse(JSON.parse(l)));
    await eventually(async () => expect(read().filter((l) => l.agent_id === "audited").length).toBe(1));
    const lines = read();
    const mine = lines.filter((l) => l.agent_id === "audited");
    expect(mine[0]).toMatchObject({ method: "POST", path: "/v1/execute", status: 200, auth: "peercred", error: null });
    expect(mine[0]!.peer).toEqual({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
    expect(mine[0]!.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    expect(lines.some((l) => l.status === 400 && l.error === "bad_request")).toBe(true);
  });

  test("traceparent: the caller's trace id reaches the agent (new parent id) and comes back", async () => {
    const seen: string[] = [];
    const fakeSock = join(dir, "fake-agent.sock");
    const fake = Bun.serve({
      unix: fakeSock,
      fetch(req) {
        seen.push(req.headers.get("traceparent") ?? "");
        return Response.json({ worlds: [] });
      },
    });
    const p2 = await startProxy({ socketPath: join(dir, "sock2", "agent.sock"), agentSocket: fakeSock, auditPath: null });
    try {
      const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
      const r = await http(p2.socketPath, "GET", "/v1/worlds", undefined, { traceparent: tp });
      expect(r.status).toBe(200);
      expect(seen.length).toBe(1);
      expect(seen[0]).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
      expect(seen[0]).not.toBe(tp);
      expect(r.headers.get("traceparent")).toBe(seen[0]!);
      await http(p2.socketPath, "GET", "/v1/worlds", undefined, { traceparent: "garbage" });
      expect(seen[1]).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      expect(seen[1]!.slice(3, 35)).not.toBe("0af7651916cd43dd8448eb211c80319c");
    } finally {
      await p2.close();
      fake.stop(true);
    }
  });

  test("budgets are enforced by the proxy itself and again by the agent (neither can be bypassed)", async () => {
    const body = { cmd: "true", cwd: proj, agent_id: "both", budget: { max_execs: 2 } };
    expect((await http(proxy.socketPath, "POST", "/v1/execute", body)).status).toBe(200);
    expect((await http(proxy.socketPath, "POST", "/v1/execute", body)).status).toBe(200);
    const viaProxy = await http(proxy.socketPath, "POST", "/v1/execute", body);
    expect(viaProxy.status).toBe(429);
    // the proxy refused: its span is in the host trace, the agent wrote none for this agent
    expect((await spansIn(hostTrace)).filter((s) => s.event_type === "rate_limit" && s.agent_id === "both").length).toBe(1);
    expect((await spansIn(agent.trace)).filter((s) => s.event_type === "rate_limit" && s.agent_id === "both").length).toBe(0);
    const spanId = /spn_[0-9a-f-]{36}/.exec(viaProxy.body.error.hint)![0];
    expect((await http(proxy.socketPath, "GET", `/v1/trace/${spanId}`)).body.event_type).toBe("rate_limit");
    // going around the proxy does not help: the agent counted the forwarded executes
    const direct = await http(agent.socket, "POST", "/v1/execute", body);
    expect(direct.status).toBe(429);
  });

  test("per-agent rate limit → 429 rate_limited (other agents unaffected)", async () => {
    const p3 = await startProxy({ socketPath: join(dir, "sock3", "agent.sock"), agentSocket: agent.socket, auditPath: null, tracePath: hostTrace, rate: { ratePerSec: 0.001, burst: 2 } });
    try {
      const go = (id: string) => http(p3.socketPath, "POST", "/v1/execute", { cmd: "true", cwd: proj, agent_id: id });
      expect((await go("rl")).status).toBe(200);
      expect((await go("rl")).status).toBe(200);
      const r = await go("rl");
      expect(r.status).toBe(429);
      expect(r.body.error.message).toContain("rate limit for agent rl");
      expect((await go("rl-other")).status).toBe(200);
    } finally {
      await p3.close();
    }
  });

  test("TCP loopback: bearer token required; non-loopback addresses refused", async () => {
    const token = "t".repeat(8) + Bun.randomUUIDv7();
    const p4 = await startProxy({ socketPath: join(dir, "sock4", "agent.sock"), agentSocket: agent.socket, auditPath: null, tcp: { host: "127.0.0.1", port: 0, token } });
    try {
      const url = `http://127.0.0.1:${p4.tcp!.port}/v1/capabilities`;
      expect((await fetch(url, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
      const none = await fetch(url);
      expect(none.status).toBe(403);
      expect(((await none.json()) as { error: { code: string } }).error.code).toBe("denied");
      expect((await fetch(url, { headers: { authorization: `Bearer ${token}x` } })).status).toBe(403);
    } finally {
      await p4.close();
    }
    await expect(startProxy({ socketPath: join(dir, "sock5", "agent.sock"), agentSocket: agent.socket, tcp: { host: "0.0.0.0", port: 0, token } })).rejects.toBeInstanceOf(ProxyError);
  });

  test("policy gate (issue 4's broker in the proxy): deny → 403, approval → 409 → approve → retry runs", async () => {
    const { PolicyBroker, ApiApprovals, ApprovalStore } = await import("../../src/broker/index.ts");
    const home = join(dir, "policy-home");
    const pdir = join(home, ".substrate", "policies");
    (await import("node:fs")).mkdirSync(pdir, { recursive: true });
    (await import("node:fs")).writeFileSync(
      join(pdir, "default.yaml"),
      "id: default\nname: test\nmode: enforce\ncommands:\n  denied: ['rm -rf *']\n  require_approval: ['touch approved-*']\n",
    );
    const broker = new PolicyBroker({ home, warn: () => {} });
    const p6 = await startProxy({
      socketPath: join(dir, "sock7", "agent.sock"),
      agentSocket: agent.socket,
      auditPath: null,
      tracePath: hostTrace,
      policy: { broker, approvals: new ApiApprovals(new ApprovalStore(join(home, ".substrate", "approvals.json"))) },
    });
    try {
      const victim = join(proj, "keep-me");
      (await import("node:fs")).writeFileSync(victim, "x");
      const denied = await http(p6.socketPath, "POST", "/v1/execute", { cmd: `rm -rf ${victim}`, cwd: proj, agent_id: "gated" });
      expect(denied.status).toBe(403);
      expect(denied.body.error.code).toBe("denied");
      expect((await import("node:fs")).existsSync(victim)).toBe(true); // never forwarded

      const ask = await http(p6.socketPath, "POST", "/v1/execute", { cmd: "touch approved-1", cwd: proj, agent_id: "gated" });
      expect(ask.status).toBe(409);
      expect(ask.body.approval.command).toBe("touch approved-1");
      expect((await import("node:fs")).existsSync(join(proj, "approved-1"))).toBe(false);
      // issue 18.5: not on the proxy's API socket; on its approver socket
      expect((await http(p6.socketPath, "POST", "/v1/request_scopes/approve", { approval_id: ask.body.approval.approval_id, choice: "once" })).status).toBe(403);
      const ok = await http(approveSocketFor(p6.socketPath), "POST", `/v1/approvals/${ask.body.approval.approval_id}`, { choice: "once" });
      expect(ok.status).toBe(200);
      expect(ok.body.command).toBe("touch approved-1");
      const retry = await http(p6.socketPath, "POST", "/v1/execute", { cmd: "touch approved-1", cwd: proj, agent_id: "gated" });
      expect(retry.status).toBe(200);
      expect((await import("node:fs")).existsSync(join(proj, "approved-1"))).toBe(true);
      expect((await http(p6.socketPath, "POST", "/v1/execute", { cmd: "touch approved-1", cwd: proj, agent_id: "gated" })).status).toBe(409); // once

      const ws = await openStream(p6.socketPath, { cmd: `rm -rf ${victim}`, cwd: proj, agent_id: "gated" });
      expect(await ws.closed).toBe(4403);
      expect(ws.msg("error")?.code).toBe("denied");
      expect((await import("node:fs")).existsSync(victim)).toBe(true);
      const allowed = await openStream(p6.socketPath, { cmd: "echo fine", cwd: proj, agent_id: "gated" });
      expect((await allowed.exit()).code).toBe(0);
      expect(allowed.text()).toContain("fine");
    } finally {
      broker.close();
      await p6.close();
    }
  });

  test("agent gone → 503 unavailable with a next step", async () => {
    const p5 = await startProxy({ socketPath: join(dir, "sock6", "agent.sock"), agentSocket: join(dir, "no-agent.sock"), auditPath: null });
    try {
      const r = await http(p5.socketPath, "GET", "/v1/capabilities");
      expect(r.status).toBe(503);
      expect(r.body.error).toMatchObject({ code: "unavailable", hint: "run `substrate world doctor`" });
    } finally {
      await p5.close();
    }
  });
});
