/**
 * Issue 18.5: approvals must come from the human, never from the client that asked. The API
 * socket (world agent and host proxy) refuses `POST /v1/request_scopes/approve` with 403;
 * pending approvals are listed and answered only on the approver socket beside it, each only
 * by the uid that asked (root: all), and never from inside a world; `substrate approve` needs
 * a terminal. Judged by what the asking client ends up holding / what lands in the project.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { approveSocketFor } from "../../src/api/approver.ts";
import { startProxy, type RunningProxy } from "../../src/proxy/server.ts";
import { HOST_BIN, hostArgv, startAgent, type TestAgent } from "../helpers/agent.ts";
import { http } from "../integration/api-helpers.ts";
import { apiAs, createUser, openSocket, out, userProject, type TestUser } from "./_users.ts";

let agent: TestAgent;
let approveSock: string;
let alice: TestUser;
let bob: TestUser;
let dir: string;

beforeAll(async () => {
  agent = await startAgent();
  approveSock = approveSocketFor(agent.socket);
  openSocket(agent.socket);
  openSocket(approveSock); // the test's stand-in for group substrate (0660 root:substrate)
  alice = createUser("sbpa");
  bob = createUser("sbpb");
  dir = mkdtempSync("/tmp/substrate-approval-");
  chmodSync(dir, 0o755);
});
afterAll(async () => {
  await agent.stop();
  alice?.remove();
  bob?.remove();
  rmSync(dir, { recursive: true, force: true });
});

const ask = (u: TestUser, agentId: string, scopes = ["net:example.com"]) => apiAs(u, agent.socket, "POST", "/v1/request_scopes", { agent_id: agentId, scopes });
const approverAs = (u: TestUser, method: string, path: string, body?: unknown) => apiAs(u, approveSock, method, path, body);

describe("the world agent", () => {
  test("the approver socket sits beside the API socket", () => {
    expect(approveSock).toBe(join(agent.dir, "agent-approve.sock"));
    expect(existsSync(approveSock)).toBe(true);
  });

  test("the asking client cannot approve itself on the API socket (403 forbidden, nothing granted)", () => {
    const r = ask(alice, "self-approver");
    expect(r.status).toBe(409);
    const id = r.body.approval.approval_id;
    expect(r.body.error.hint).toContain("substrate approve");
    for (const choice of ["once", "session", "always"]) {
      const a = apiAs(alice, agent.socket, "POST", "/v1/request_scopes/approve", { approval_id: id, choice });
      expect(a.status).toBe(403);
      expect(a.body.error.code).toBe("forbidden");
      expect(a.body.error.hint).toContain("substrate approve");
    }
    // still not held: asking again is still a 409, and the approval is still pending
    expect(ask(alice, "self-approver").status).toBe(409);
    expect(approverAs(alice, "GET", "/v1/approvals").body.approvals.map((a: any) => a.approval_id)).toContain(id);
  });

  test("root on the API socket cannot approve either", async () => {
    const r = await http(agent.socket, "POST", "/v1/request_scopes", { agent_id: "root-agent", scopes: ["exec:git"] });
    expect(r.status).toBe(409);
    const a = await http(agent.socket, "POST", "/v1/request_scopes/approve", { approval_id: r.body.approval.approval_id, choice: "session" });
    expect(a.status).toBe(403);
    expect(a.body.error.code).toBe("forbidden");
  });

  test("the approver channel: the request's own uid lists and answers it; the grant reaches its commands", () => {
    const r = ask(alice, "granted-agent", ["exec:make"]);
    expect(r.status).toBe(409);
    const id = r.body.approval.approval_id;
    const mine = approverAs(alice, "GET", "/v1/approvals").body.approvals.find((a: any) => a.approval_id === id);
    expect(mine).toMatchObject({ kind: "scopes", uid: alice.uid, agent_id: "granted-agent", scopes: ["exec:make"] });
    const ok = approverAs(alice, "POST", `/v1/approvals/${id}`, { choice: "session" });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ approval_id: id, kind: "scopes", agent_id: "granted-agent", granted: ["exec:make"] });
    expect(ask(alice, "granted-agent", ["exec:make"]).status).toBe(200);
    // the command's sealed token carries it
    const proj = userProject(alice, "scoped");
    const ex = apiAs(alice, agent.socket, "POST", "/v1/execute", { agent_id: "granted-agent", cwd: proj, cmd: "cat <&3" });
    expect(ex.status).toBe(200);
    expect(JSON.parse(out(ex)).scopes).toEqual(["exec:make"]);
    // answered: gone from the channel
    expect(approverAs(alice, "POST", `/v1/approvals/${id}`, { choice: "once" }).status).toBe(404);
  });

  test("another uid neither sees nor answers it (404, not 403: its existence stays private)", () => {
    const r = ask(alice, "alices-agent", ["exec:curl"]);
    const id = r.body.approval.approval_id;
    expect(approverAs(bob, "GET", "/v1/approvals").body.approvals.map((a: any) => a.approval_id)).not.toContain(id);
    for (const choice of ["once", "session", "always", "deny"]) {
      const b = approverAs(bob, "POST", `/v1/approvals/${id}`, { choice });
      expect(b.status).toBe(404);
      expect(b.body.error.code).toBe("not_found");
    }
    // bob's agent of the same name holds nothing of alice's either
    expect(apiAs(bob, agent.socket, "POST", "/v1/request_scopes", { agent_id: "granted-agent", scopes: ["exec:make"] }).status).toBe(409);
    expect(ask(alice, "alices-agent", ["exec:curl"]).status).toBe(409); // bob's deny did nothing
  });

  test("root on the approver channel sees every uid's approvals", async () => {
    const r = ask(bob, "bobs-agent");
    const list = (await http(approveSock, "GET", "/v1/approvals")).body.approvals;
    expect(list.find((a: any) => a.approval_id === r.body.approval.approval_id)?.uid).toBe(bob.uid);
  });

  test("a deny answer grants nothing", () => {
    const r = ask(alice, "denied-agent", ["exec:rm"]);
    const d = approverAs(alice, "POST", `/v1/approvals/${r.body.approval.approval_id}`, { choice: "deny" });
    expect(d.status).toBe(200);
    expect(d.body.granted).toEqual([]);
    expect(ask(alice, "denied-agent", ["exec:rm"]).status).toBe(409);
  });
});

describe("the host proxy", () => {
  let proxy: RunningProxy;
  let proj: string;
  let broker: { close(): void };
  beforeAll(async () => {
    const { PolicyBroker, ApiApprovals, ApprovalStore } = await import("../../src/broker/index.ts");
    const home = join(dir, "home");
    mkdirSync(join(home, ".substrate", "policies"), { recursive: true });
    writeFileSync(join(home, ".substrate", "policies", "default.yaml"), "id: default\nname: test\nmode: enforce\ncommands:\n  require_approval: ['touch approved-*']\n");
    const b = new PolicyBroker({ home, warn: () => {} });
    broker = b;
    // the proxy's socket inside the project: a world can see its path (as worlds see ~/.substrate)
    proj = join(dir, "proj");
    mkdirSync(proj);
    proxy = await startProxy({
      socketPath: join(proj, ".sub", "agent.sock"),
      agentSocket: agent.socket,
      auditPath: null,
      tracePath: join(dir, "host-trace.jsonl"),
      policy: { broker: b, approvals: new ApiApprovals(new ApprovalStore(join(home, ".substrate", "approvals.json"))) },
    });
  });
  afterAll(async () => {
    broker.close();
    await proxy.close();
  });

  test("a policy approval: the client cannot approve it through the proxy; the proxy's approver socket can", async () => {
    const asked = await http(proxy.socketPath, "POST", "/v1/execute", { cmd: "touch approved-1", cwd: proj, agent_id: "gated" });
    expect(asked.status).toBe(409);
    const id = asked.body.approval.approval_id;
    const self = await http(proxy.socketPath, "POST", "/v1/request_scopes/approve", { approval_id: id, choice: "always" });
    expect(self.status).toBe(403);
    expect(self.body.error.code).toBe("forbidden");
    expect((await http(proxy.socketPath, "POST", "/v1/execute", { cmd: "touch approved-1", cwd: proj, agent_id: "gated" })).status).toBe(409);
    expect(existsSync(join(proj, "approved-1"))).toBe(false);

    const psock = approveSocketFor(proxy.socketPath);
    const listed = (await http(psock, "GET", "/v1/approvals")).body.approvals;
    const pending = listed.filter((a: any) => a.kind === "policy" && a.command === "touch approved-1");
    expect(pending.length).toBeGreaterThanOrEqual(1);
    const ok = await http(psock, "POST", `/v1/approvals/${pending[0].approval_id}`, { choice: "once" });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ kind: "policy", command: "touch approved-1", choice: "once" });
    expect((await http(proxy.socketPath, "POST", "/v1/execute", { cmd: "touch approved-1", cwd: proj, agent_id: "gated" })).status).toBe(200);
    expect(existsSync(join(proj, "approved-1"))).toBe(true);
  });

  test("a scope approval asked through the proxy: refused on the proxy, pending on the agent's channel", async () => {
    const asked = await http(proxy.socketPath, "POST", "/v1/request_scopes", { agent_id: "via-proxy", scopes: ["net:example.org"] });
    expect(asked.status).toBe(409);
    const self = await http(proxy.socketPath, "POST", "/v1/request_scopes/approve", { approval_id: asked.body.approval.approval_id, choice: "session" });
    expect(self.status).toBe(403);
    expect((await http(proxy.socketPath, "POST", "/v1/request_scopes", { agent_id: "via-proxy", scopes: ["net:example.org"] })).status).toBe(409);
  });

  test("a command inside a world cannot use an approver socket it can see (403: not on the host's root)", async () => {
    const psock = approveSocketFor(proxy.socketPath);
    const asked = await http(proxy.socketPath, "POST", "/v1/execute", { cmd: "touch approved-2", cwd: proj, agent_id: "gated" });
    expect(asked.status).toBe(409);
    const id = asked.body.approval.approval_id;
    const inWorld = `curl -sS --unix-socket ${psock} -X POST -H 'content-type: application/json' --data '{"choice":"always"}' http://x/v1/approvals/${id}; echo; curl -sS --unix-socket ${psock} http://x/v1/approvals`;
    const r = await http(agent.socket, "POST", "/v1/execute", { cmd: inWorld, cwd: proj, agent_id: "in-world" });
    expect(r.status).toBe(200);
    const lines = Buffer.from(r.body.stdout_b64, "base64").toString().trim().split("\n");
    expect(lines.length).toBe(2);
    for (const l of lines) {
      const body = JSON.parse(l);
      expect(body.error.code).toBe("forbidden");
      expect(body.error.message).toContain("another root directory");
    }
    // still pending, and the command still needs the approval
    expect((await http(psock, "GET", "/v1/approvals")).body.approvals.map((a: any) => a.approval_id)).toContain(id);
    expect(existsSync(join(proj, "approved-2"))).toBe(false);
  });

  test("nor can it use the proxy's API socket it can see (it would act as another agent): 403 denied", async () => {
    const inWorld = `curl -sS --unix-socket ${proxy.socketPath} -X POST -H 'content-type: application/json' --data '{"agent_id":"other-agent","cmd":"touch via-proxy","cwd":"${proj}"}' http://x/v1/execute; echo; curl -sS --unix-socket ${proxy.socketPath} -X POST -H 'content-type: application/json' --data '{"agent_id":"other-agent","scopes":["exec:git"]}' http://x/v1/request_scopes`;
    const r = await http(agent.socket, "POST", "/v1/execute", { cmd: inWorld, cwd: proj, agent_id: "in-world" });
    expect(r.status).toBe(200);
    const lines = Buffer.from(r.body.stdout_b64, "base64").toString().trim().split("\n");
    expect(lines.length).toBe(2);
    for (const l of lines) {
      const body = JSON.parse(l);
      expect(body.error.code).toBe("denied");
      expect(body.error.message).toContain("another root directory");
    }
    expect(existsSync(join(proj, "via-proxy"))).toBe(false);
    // the host side still works
    expect((await http(proxy.socketPath, "GET", "/v1/capabilities")).status).toBe(200);
  });
});

describe("substrate approve", () => {
  const env = () => ({ ...process.env, SUBSTRATE_WORLD_SOCKET: agent.socket, HOME: dir, SUBSTRATE_HOME: join(dir, "cli-home") });

  test("without a terminal it refuses with a clear message and exit 2, answering nothing", async () => {
    const r = await http(agent.socket, "POST", "/v1/request_scopes", { agent_id: "cli-agent", scopes: ["exec:cargo"] });
    const id = r.body.approval.approval_id;
    const p = Bun.spawnSync([...hostArgv(), "approve", id], { env: env(), stdin: new TextEncoder().encode("o\n"), stdout: "pipe", stderr: "pipe" });
    expect(p.exitCode).toBe(2);
    const err = p.stderr.toString();
    expect(err).toContain("stdin is not a terminal; nothing was answered");
    expect(err).not.toContain("    at "); // no stack trace
    // --list needs no terminal and still shows it
    const l = Bun.spawnSync([...hostArgv(), "approve", "--list", "--json"], { env: env(), stdout: "pipe", stderr: "pipe" });
    expect(l.exitCode).toBe(0);
    expect(JSON.parse(l.stdout.toString()).approvals.map((a: any) => a.approval_id)).toContain(id);
    expect((await http(agent.socket, "POST", "/v1/request_scopes", { agent_id: "cli-agent", scopes: ["exec:cargo"] })).status).toBe(409);
  });

  test.skipIf(!existsSync(HOST_BIN))("at a terminal it asks on /dev/tty and answers what the person typed", async () => {
    const r = await http(agent.socket, "POST", "/v1/request_scopes", { agent_id: "tty-agent", scopes: ["exec:npm"] });
    const id = r.body.approval.approval_id;
    // script(1) gives the command a terminal; the "person" types `s` on it
    const p = Bun.spawn(["script", "-qec", `${HOST_BIN} approve ${id}`, "/dev/null"], { env: env(), stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    let seen = "";
    const reader = (async () => {
      for await (const c of p.stdout as ReadableStream<Uint8Array>) seen += new TextDecoder().decode(c);
    })();
    for (let i = 0; i < 400 && !seen.includes("Answer ["); i++) await Bun.sleep(25);
    expect(seen).toContain(`approval ${id}`);
    p.stdin.write("s\n");
    p.stdin.flush();
    expect(await p.exited).toBe(0);
    await reader;
    expect(seen).toContain("granted exec:npm to agent tty-agent (session)");
    expect((await http(agent.socket, "POST", "/v1/request_scopes", { agent_id: "tty-agent", scopes: ["exec:npm"] })).status).toBe(200);
  });
});
