/**
 * Issue 13 (the root-escalation hole): whoever can connect to the root agent's socket (group
 * `substrate`) used to get a world running as root on any directory it named. Now a request is
 * served as its SO_PEERCRED peer: the project must be writable by that peer on the host, and
 * the world's commands run as exactly that uid. Judged by what lands on the host.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startAgent, type TestAgent } from "../helpers/agent.ts";
import { apiAs, createUser, err, openSocket, out, userProject, type TestUser } from "./_users.ts";

let agent: TestAgent;
let alice: TestUser;
let bob: TestUser;
const probe = `/etc/zz-substrate-probe-${process.pid}`;

beforeAll(async () => {
  agent = await startAgent();
  openSocket(agent.socket);
  alice = createUser("sbta");
  bob = createUser("sbtb");
});
afterAll(async () => {
  rmSync(probe, { force: true });
  await agent.stop();
  alice?.remove();
  bob?.remove();
});

const exec = (u: TestUser, body: Record<string, unknown>) => apiAs(u, agent.socket, "POST", "/v1/execute", { agent_id: "sec", ...body });

describe("a regular caller of the root agent", () => {
  test("the exploit: cwd=/etc → 403 forbidden, nothing written (was: /etc/zz-probe owned by root)", () => {
    const r = exec(alice, { cmd: `touch ${probe}`, cwd: "/etc" });
    expect(r.status).toBe(403);
    expect(r.body.error.code).toBe("forbidden");
    expect(r.body.error.message).toContain("not writable by");
    expect(r.body.error.hint).toBeTruthy();
    expect(existsSync(probe)).toBe(false);
  });

  test("another user's project → 403, nothing written there", () => {
    const bobs = userProject(bob, "bobs");
    const r = exec(alice, { cmd: "echo pwned > owned.txt", cwd: bobs });
    expect(r.status).toBe(403);
    expect(existsSync(join(bobs, "owned.txt"))).toBe(false);
  });

  test("a root-owned project (0755) → 403", () => {
    const d = mkdtempSync("/tmp/substrate-rootproj-");
    chmodSync(d, 0o755);
    try {
      const r = exec(alice, { cmd: "touch x", cwd: d });
      expect(r.status).toBe(403);
      expect(existsSync(join(d, "x"))).toBe(false);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  test("the body cannot claim another identity (env USER/HOME, world.project_dir)", () => {
    const mine = userProject(alice, "claims");
    const r = exec(alice, { cmd: "id -u; id -g; echo $HOME; echo $USER", cwd: mine, env: { HOME: "/root", USER: "root" } });
    expect(r.status).toBe(200);
    const [uid, gid, home, user] = out(r).trim().split("\n");
    expect(uid).toBe(String(alice.uid));
    expect(gid).toBe(String(alice.gid));
    expect(home).toBe(alice.home);
    expect(user).toBe(alice.name);
    const r2 = exec(alice, { cmd: "true", cwd: mine, world: { project_dir: "/etc" } });
    expect(r2.status).toBe(403);
  });

  test("in its own project: runs as its uid/gid/groups, files land owned by it, no capabilities", () => {
    const mine = userProject(alice);
    const r = exec(alice, { cmd: "id -u; id -G; grep CapEff /proc/self/status; echo hi > made.txt; touch /etc/nope 2>&1 || true", cwd: mine });
    expect(r.status).toBe(200);
    const [uid, groups, capeff] = out(r).trim().split("\n");
    expect(uid).toBe(String(alice.uid));
    expect(groups!.split(" ")).toContain(String(alice.gid));
    expect(groups!.split(" ")).not.toContain("0");
    expect(capeff).toMatch(/CapEff:\s+0+$/);
    expect(statSync(join(mine, "made.txt")).uid).toBe(alice.uid);
    expect(existsSync("/etc/nope")).toBe(false);
  });

  test("two users on the same project path never share a world", () => {
    // A project both may write (shared group dir, as in a team checkout).
    const shared = mkdtempSync("/tmp/substrate-shared-");
    chmodSync(shared, 0o777);
    try {
      const a = exec(alice, { cmd: "id -u", cwd: shared });
      const b = exec(bob, { cmd: "id -u", cwd: shared });
      expect(a.status).toBe(200);
      expect(b.status).toBe(200);
      expect(out(a).trim()).toBe(String(alice.uid));
      expect(out(b).trim()).toBe(String(bob.uid));
      expect(a.body.world_id).not.toBe(b.body.world_id);
      // …and one cannot see, delete or attach to the other's world.
      const listed = apiAs(bob, agent.socket, "GET", "/v1/worlds");
      expect(listed.body.worlds.map((w: { id: string }) => w.id)).not.toContain(a.body.world_id);
      expect(apiAs(bob, agent.socket, "DELETE", `/v1/worlds/${a.body.world_id}`).status).toBe(404);
      expect(exec(alice, { cmd: "true", cwd: shared }).body.world_id).toBe(a.body.world_id);
    } finally {
      rmSync(shared, { recursive: true, force: true });
    }
  });

  test("two agent ids of one user get two worlds (a leftover process of one never sees the other's commands)", () => {
    const mine = userProject(alice, "agents");
    const a = exec(alice, { cmd: "true", cwd: mine, agent_id: "agent-a" });
    const b = exec(alice, { cmd: "true", cwd: mine, agent_id: "agent-b" });
    expect(a.body.world_id).not.toBe(b.body.world_id);
  });

  test("an isolated result is the caller's own: another user gets 404 for its diff and apply", () => {
    const mine = userProject(alice, "iso");
    writeFileSync(join(mine, "f.txt"), "v1\n");
    chownSync(join(mine, "f.txt"), alice.uid, alice.gid);
    const r = exec(alice, { cmd: "echo v2 > f.txt", cwd: mine, isolated: true });
    expect(r.status).toBe(200);
    const span = r.body.span_id;
    expect(apiAs(bob, agent.socket, "GET", `/v1/fs_diff/${span}`).status).toBe(404);
    expect(apiAs(bob, agent.socket, "POST", `/v1/fs_diff/${span}/apply`, {}).status).toBe(404);
    expect(apiAs(alice, agent.socket, "GET", `/v1/fs_diff/${span}`).status).toBe(200);
    expect(err(r)).toBe("");
  });

  test("an isolated run of a regular caller can create at the project's top level; the diff and the apply are exact and the files stay the caller's", () => {
    const mine = userProject(alice, "iso-new");
    const r = exec(alice, { cmd: "touch top.txt && mkdir -p sub && echo x > sub/y.txt", cwd: mine, isolated: true });
    expect(r.status).toBe(200);
    expect(r.body.exit).toBe(0);
    expect(err(r)).toBe("");
    expect(existsSync(join(mine, "top.txt"))).toBe(false);
    expect([...r.body.fs_diff.writes].sort()).toEqual(["sub/", "sub/y.txt", "top.txt"].sort());
    expect(r.body.fs_diff.mods).toEqual([]);
    const a = apiAs(alice, agent.socket, "POST", `/v1/fs_diff/${r.body.span_id}/apply`, {});
    expect(a.status).toBe(200);
    for (const f of ["top.txt", "sub", "sub/y.txt"]) expect(statSync(join(mine, f)).uid).toBe(alice.uid);
    expect(statSync(mine).uid).toBe(alice.uid);
  });
});
