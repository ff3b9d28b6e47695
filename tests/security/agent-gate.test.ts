/**
 * Issue 17 ("a client that talks to the agent's socket directly skips the policy entirely"):
 * the root agent now decides on every execute with the CALLER's policy, read by a helper
 * running as the caller (agent/policyd.ts). Attacks: a direct socket client runs a command its
 * policy denies; a caller plants a symlink to a root-only file where its policy should be, so
 * that a root reader would echo it. Judged on the host (marker files, the answer's text).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { startAgent, type TestAgent } from "../helpers/agent.ts";
import { apiAs, createUser, openSocket, out, userProject, type TestUser } from "./_users.ts";

let agent: TestAgent;
let alice: TestUser;
let mallory: TestUser;

const asUser = (u: TestUser, line: string) => {
  const r = Bun.spawnSync(["setpriv", `--reuid=${u.uid}`, `--regid=${u.gid}`, "--init-groups", "--", "bash", "-c", line], { cwd: u.home, env: { HOME: u.home, PATH: "/usr/bin:/bin" }, stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`as ${u.name}: ${r.stderr.toString()}`);
};

beforeAll(async () => {
  agent = await startAgent();
  openSocket(agent.socket);
  alice = createUser("sbga");
  mallory = createUser("sbgm");
  asUser(alice, `mkdir -p ~/.substrate/policies && printf 'id: default\\nname: alice\\nmode: enforce\\ncommands:\\n  denied: ["touch denied-*"]\\n' > ~/.substrate/policies/default.yaml`);
  asUser(mallory, "mkdir -p ~/.substrate/policies && ln -s /etc/shadow ~/.substrate/policies/default.yaml");
});
afterAll(async () => {
  await agent?.stop();
  alice?.remove();
  mallory?.remove();
});

describe("a client on the agent's own socket", () => {
  test("gets its own policy's decision: denied → 403, nothing runs; allowed → runs", () => {
    const proj = userProject(alice);
    const d = apiAs(alice, agent.socket, "POST", "/v1/execute", { agent_id: "direct", cwd: proj, cmd: "touch denied-x" });
    expect(d.status).toBe(403);
    expect(d.body.error.code).toBe("denied");
    expect(existsSync(join(proj, "denied-x"))).toBe(false);
    const ok = apiAs(alice, agent.socket, "POST", "/v1/execute", { agent_id: "direct", cwd: proj, cmd: "touch fine && echo ran" });
    expect(ok.status).toBe(200);
    expect(out(ok)).toBe("ran\n");
  });

  test("the same through a stream start (one gate for execute and stream)", async () => {
    const proj = userProject(alice, "s");
    // A stream start as alice (curl cannot speak WebSocket; a tiny bun client under setpriv does).
    const script = `const ws = new WebSocket("ws+unix://${agent.socket}:/v1/stream"); ws.onopen = () => ws.send(JSON.stringify({type:"start",agent_id:"direct",cwd:"${proj}",cmd:"touch denied-y",pty:false})); ws.onmessage = (m) => { if (typeof m.data === "string") { console.log(m.data); } }; ws.onclose = () => process.exit(0); setTimeout(() => process.exit(0), 10000);`;
    const r = Bun.spawnSync(["setpriv", `--reuid=${alice.uid}`, `--regid=${alice.gid}`, "--init-groups", "--", process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe", env: { PATH: "/usr/bin:/bin", HOME: alice.home } });
    expect(r.stdout.toString()).toContain('"denied"');
    expect(existsSync(join(proj, "denied-y"))).toBe(false);
  });

  test("a policy path pointing at a root-only file is read as the caller: refused, nothing of it echoed", () => {
    const proj = userProject(mallory);
    const r = apiAs(mallory, agent.socket, "POST", "/v1/execute", { agent_id: "direct", cwd: proj, cmd: "true" });
    expect(r.status).not.toBe(200);
    const text = JSON.stringify(r.body);
    expect(text).not.toMatch(/root:[^"]*:\d+:/); // no /etc/shadow line
    expect(text).not.toContain("$y$");
    expect(text).not.toContain("$6$");
  });
});
