/**
 * Issue 14.6 (budget half): budgets were keyed on an agent_id the caller declares, so renaming
 * the agent reset its budget. Now:
 * - through the host proxy an agent token IS one agent: renaming is refused (403), the
 *   token's budget stays spent (a request's own budget cannot loosen it), the agent_id cannot
 *   be used without its token, and `require_token` refuses tokenless callers;
 * - on the agent socket budgets are keyed by (peer uid, agent_id): another user naming its
 *   agent alike neither shares nor resets (nor spends) this user's budget.
 * Judged by what runs: a refused execute leaves no file in the project.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AgentTokens, AgentTokensError } from "../../src/proxy/agents.ts";
import { startProxy, type RunningProxy } from "../../src/proxy/server.ts";
import { startAgent, type TestAgent } from "../helpers/agent.ts";
import { http, openStream } from "../integration/api-helpers.ts";
import { apiAs, createUser, openSocket, userProject, type TestUser } from "./_users.ts";

let agent: TestAgent;
let dir: string;
let proj: string;

beforeAll(async () => {
  agent = await startAgent();
  openSocket(agent.socket);
  dir = mkdtempSync("/tmp/substrate-budget-");
  chmodSync(dir, 0o755);
  proj = join(dir, "proj");
  mkdirSync(proj);
});
afterAll(async () => {
  await agent.stop();
  rmSync(dir, { recursive: true, force: true });
});

const TOKEN = "bot-token-0123456789abcdef0123456789";
const OTHER = "other-token-0123456789abcdef01234567";
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
const created = () => readdirSync(proj).filter((f) => f.startsWith("ran-")).length;

describe("host proxy: an agent token binds agent_id and budget", () => {
  let proxy: RunningProxy;
  let tcp: string;
  beforeAll(async () => {
    const tokens = new AgentTokens({
      require_token: false,
      agents: [
        { agent_id: "bot", token: TOKEN, budget: { max_execs: 2 } },
        { agent_id: "other", token: OTHER },
      ],
    });
    proxy = await startProxy({
      socketPath: join(dir, "sock", "agent.sock"),
      agentSocket: agent.socket,
      auditPath: null,
      tracePath: join(dir, "host-trace.jsonl"),
      tcp: { host: "127.0.0.1", port: 0, token: "shared-token-0123456789abcdef" },
      agentTokens: tokens,
    });
    tcp = `http://127.0.0.1:${proxy.tcp!.port}`;
  });
  afterAll(async () => {
    await proxy.close();
  });

  const run = (agentId: string, n: number, headers: Record<string, string>, budget?: Record<string, number>) =>
    http(proxy.socketPath, "POST", "/v1/execute", { cmd: `touch ran-${agentId}-${n}`, cwd: proj, agent_id: agentId, ...(budget ? { budget } : {}) }, headers);

  test("the token's budget is spent after max_execs; renaming, re-declaring or dropping the token never gives a fresh one", async () => {
    expect((await run("bot", 1, bearer(TOKEN))).status).toBe(200);
    expect((await run("bot", 2, bearer(TOKEN))).status).toBe(200);
    const spent = await run("bot", 3, bearer(TOKEN));
    expect(spent.status).toBe(429);
    expect(spent.body.error.code).toBe("rate_limited");
    const before = created();

    // rename with the same token
    for (const name of ["bot2", "Bot", "bot.", "fresh-agent"]) {
      const r = await run(name, 4, bearer(TOKEN));
      expect(r.status).toBe(403);
      expect(r.body.error.code).toBe("forbidden");
      expect(r.body.error.message).toContain("belongs to agent bot");
    }
    // a looser budget of its own
    expect((await run("bot", 5, bearer(TOKEN), { max_execs: 1000 })).status).toBe(429);
    // the same name without the token, or with another agent's token
    expect((await run("bot", 6, {})).status).toBe(403);
    expect((await run("bot", 7, bearer(OTHER))).status).toBe(403);
    // an unknown token on the Unix socket is refused outright
    expect((await run("bot", 8, bearer("nope-0123456789abcdef0123456789"))).status).toBe(403);
    expect(created()).toBe(before); // nothing more ran
    // and the budget the token set is what the world agent enforces too (forwarded)
    const st = await http(proxy.socketPath, "GET", "/v1/budgets/bot", undefined, bearer(TOKEN));
    expect(st.status).toBe(200);
    expect(st.body.budget.max_execs).toBe(2);
    expect(st.body.exhausted).toContain("max_execs");
  });

  test("over TCP: the agent token authenticates and binds the same way", async () => {
    const post = (agentId: string, token: string) =>
      fetch(`${tcp}/v1/execute`, { method: "POST", headers: { "content-type": "application/json", ...bearer(token) }, body: JSON.stringify({ cmd: `touch ran-tcp-${agentId}`, cwd: proj, agent_id: agentId }) });
    expect((await post("bot", TOKEN)).status).toBe(429); // the same spent budget
    expect((await post("bot-tcp", TOKEN)).status).toBe(403);
    expect(existsSync(join(proj, "ran-tcp-bot-tcp"))).toBe(false);
    expect((await post("other", OTHER)).status).toBe(200);
  });

  test("a stream start under another name is refused (4403), nothing runs", async () => {
    const ws = await openStream(proxy.socketPath, { cmd: "touch ran-ws", cwd: proj, agent_id: "bot-ws" }, bearer(TOKEN));
    expect(await ws.closed).toBe(4403);
    expect(ws.msg("error")?.code).toBe("forbidden");
    const again = await openStream(proxy.socketPath, { cmd: "touch ran-ws2", cwd: proj, agent_id: "bot" }, bearer(TOKEN));
    expect(await again.closed).toBe(4429); // the token's budget, spent over HTTP, holds for streams
    expect(existsSync(join(proj, "ran-ws"))).toBe(false);
    expect(existsSync(join(proj, "ran-ws2"))).toBe(false);
  });

  test("request_scopes / budgets for another agent with the token → 403", async () => {
    expect((await http(proxy.socketPath, "POST", "/v1/request_scopes", { agent_id: "elsewhere", scopes: ["exec:git"] }, bearer(TOKEN))).status).toBe(403);
    expect((await http(proxy.socketPath, "GET", "/v1/budgets/other", undefined, bearer(TOKEN))).status).toBe(403);
  });

  test("require_token: a tokenless caller cannot run under any name", async () => {
    const strict = await startProxy({
      socketPath: join(dir, "sock2", "agent.sock"),
      agentSocket: agent.socket,
      auditPath: null,
      agentTokens: new AgentTokens({ require_token: true, agents: [{ agent_id: "solo", token: TOKEN, budget: { max_execs: 1 } }] }),
    });
    try {
      const r = await http(strict.socketPath, "POST", "/v1/execute", { cmd: "touch ran-tokenless", cwd: proj, agent_id: "anything" });
      expect(r.status).toBe(403);
      expect(r.body.error.message).toContain("requires an agent token");
      expect(existsSync(join(proj, "ran-tokenless"))).toBe(false);
      expect((await http(strict.socketPath, "POST", "/v1/execute", { cmd: "true", cwd: proj, agent_id: "solo" }, bearer(TOKEN))).status).toBe(200);
      expect((await http(strict.socketPath, "POST", "/v1/execute", { cmd: "true", cwd: proj, agent_id: "solo" }, bearer(TOKEN))).status).toBe(429);
    } finally {
      await strict.close();
    }
  });

  test("the token file must be ours and private, and valid", () => {
    const f = join(dir, "agent-tokens.json");
    writeFileSync(f, JSON.stringify({ agents: [{ agent_id: "bot", token: TOKEN }] }), { mode: 0o644 });
    chmodSync(f, 0o644);
    expect(() => AgentTokens.load(f)).toThrow(AgentTokensError);
    chmodSync(f, 0o600);
    expect(AgentTokens.load(f).match(TOKEN)?.agent_id).toBe("bot");
    writeFileSync(f, JSON.stringify({ agents: [{ agent_id: "bot", token: "short" }] }));
    expect(() => AgentTokens.load(f)).toThrow(AgentTokensError);
    expect(AgentTokens.load(join(dir, "missing.json")).size).toBe(0);
    expect(() => AgentTokens.load(join(dir, "missing.json"), true)).toThrow(AgentTokensError);
  });
});

describe("world agent socket: budgets are keyed by (peer uid, agent_id)", () => {
  let alice: TestUser;
  let bob: TestUser;
  beforeAll(() => {
    alice = createUser("sbba");
    bob = createUser("sbbb");
  });
  afterAll(() => {
    alice?.remove();
    bob?.remove();
  });

  test("another user's agent of the same name neither spends, shares nor resets this user's budget", () => {
    const ap = userProject(alice, "p");
    const bp = userProject(bob, "p");
    const exec = (u: TestUser, p: string, file: string, budget?: Record<string, number>) =>
      apiAs(u, agent.socket, "POST", "/v1/execute", { agent_id: "worker", cwd: p, cmd: `touch ${file}`, ...(budget ? { budget } : {}) });
    expect(exec(alice, ap, "a1", { max_execs: 1 }).status).toBe(200);
    expect(exec(alice, ap, "a2").status).toBe(429);
    // bob's "worker" starts fresh with its own budget, and spending it leaves alice's as it was
    expect(exec(bob, bp, "b1", { max_execs: 2 }).status).toBe(200);
    expect(exec(bob, bp, "b2").status).toBe(200);
    expect(exec(bob, bp, "b3").status).toBe(429);
    expect(exec(alice, ap, "a3", { max_execs: 50 }).status).toBe(429); // still spent; cannot loosen
    const sa = apiAs(alice, agent.socket, "GET", "/v1/budgets/worker");
    const sb = apiAs(bob, agent.socket, "GET", "/v1/budgets/worker");
    expect(sa.body.used.execs).toBe(1);
    expect(sa.body.budget.max_execs).toBe(1);
    expect(sb.body.used.execs).toBe(2);
    expect(existsSync(join(ap, "a2")) || existsSync(join(ap, "a3"))).toBe(false);
    expect(existsSync(join(bp, "b3"))).toBe(false);
  });
});
