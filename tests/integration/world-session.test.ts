/**
 * The foundation's acceptance, against a real agent as root: the session world hides host
 * processes, keeps the system read-only, writes the project through, has its own hostname,
 * is reused, runs executes concurrently, and leaves nothing behind.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { b64, mountsUnder, pidsMentioning, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

let agent: TestAgent;
let proj: string;

const exec = (cmd: string, extra: Record<string, unknown> = {}) =>
  agent.client.execute({ cmd, cwd: proj, agent_id: "test", ...extra });

beforeAll(async () => {
  agent = await startAgent();
  proj = tempProject();
});

afterAll(async () => {
  const stateDir = agent.stateDir;
  await agent.stop();
  rmSync(proj, { recursive: true, force: true });
  // Nothing left: no mounts, no world processes, no world dirs.
  expect(mountsUnder(stateDir)).toEqual([]);
  expect(pidsMentioning(stateDir)).toEqual([]);
  expect(existsSync(join(stateDir, "worlds")) ? readdirSync(join(stateDir, "worlds")) : []).toEqual([]);
});

describe("session world", () => {
  test("host processes are invisible (own PID namespace)", async () => {
    const r = await exec("ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; echo; test -e /proc/$PPID && echo ok");
    expect(r.exit).toBe(0);
    const pids = b64(r.stdout_b64).split("\n")[0]!.trim().split(" ").map(Number);
    expect(pids).not.toContain(process.pid);
    expect(pids).not.toContain(agent.pid);
    expect(Math.min(...pids)).toBe(1);
    expect(pids.length).toBeLessThan(10);
  });

  test("writing under /usr fails; system dirs are read-only", async () => {
    const r = await exec("touch /usr/substrate-probe 2>&1; echo rc=$?; touch /etc/substrate-probe 2>&1; echo rc=$?; touch /substrate-probe 2>&1; echo rc=$?");
    const out = b64(r.stdout_b64);
    expect(out).toContain("Read-only file system");
    expect(out.match(/rc=1/g)?.length).toBe(3);
    expect(existsSync("/usr/substrate-probe")).toBe(false);
  });

  test("writing in the project lands on the host", async () => {
    const r = await exec("echo from-world > written.txt && mkdir -p sub && echo x > sub/y");
    expect(r.exit).toBe(0);
    expect(readFileSync(join(proj, "written.txt"), "utf8")).toBe("from-world\n");
    expect(readFileSync(join(proj, "sub/y"), "utf8")).toBe("x\n");
  });

  test("the hostname is the world's", async () => {
    const r = await exec("hostname");
    const h = b64(r.stdout_b64).trim();
    expect(h).toMatch(/^substrate-[0-9a-f]{8}$/);
    expect(h).not.toBe(hostname());
  });

  test("a second execute reuses the world (same world_id, same namespaces)", async () => {
    const ns = "readlink /proc/self/ns/mnt /proc/self/ns/pid /proc/self/ns/net /proc/self/ns/uts";
    const a = await exec(ns);
    const b = await exec(ns);
    expect(a.world_id).toBe(b.world_id);
    expect(b64(a.stdout_b64)).toBe(b64(b.stdout_b64));
    // ...and they are not the host's namespaces.
    const hostMnt = require("node:fs").readlinkSync("/proc/self/ns/mnt");
    expect(b64(a.stdout_b64)).not.toContain(hostMnt);
    const caps = await agent.client.capabilities();
    expect(caps.worlds.reused).toBeGreaterThanOrEqual(1);
    expect(caps.worlds.created).toBe(1);
  });

  test("concurrent executes overlap in time", async () => {
    // Each records start/end timestamps inside the world; overlap is an ordering fact.
    const cmd = "s=$(date +%s%N); sleep 0.4; e=$(date +%s%N); echo $s $e";
    const rs = await Promise.all([exec(cmd), exec(cmd), exec(cmd)]);
    const spans = rs.map((r) => b64(r.stdout_b64).trim().split(" ").map(BigInt) as [bigint, bigint]);
    for (let i = 1; i < spans.length; i++) {
      expect(spans[i]![0] < spans[0]![1]).toBe(true);
      expect(spans[0]![0] < spans[i]![1]).toBe(true);
    }
    expect(new Set(rs.map((r) => r.world_id)).size).toBe(1);
  });

  test("exit codes, stderr, stdin and argv mode", async () => {
    const r = await exec("echo out; echo err >&2; exit 42");
    expect(r.exit).toBe(42);
    expect(b64(r.stdout_b64)).toBe("out\n");
    expect(b64(r.stderr_b64)).toBe("err\n");
    const s = await exec("tr a-z A-Z", { stdin_b64: Buffer.from("hello").toString("base64") });
    expect(b64(s.stdout_b64)).toBe("HELLO");
    const a = await agent.client.execute({ argv: ["/bin/echo", "a b", "$HOME"], cwd: proj, agent_id: "t" });
    expect(b64(a.stdout_b64)).toBe("a b $HOME\n");
    const k = await exec("kill -9 $$");
    expect(k.exit).toBe(137);
  });

  test("the command sees the world env and the agent id", async () => {
    const r = await exec("echo $SUBSTRATE_WORLD $SUBSTRATE_AGENT_ID $SUBSTRATE_WORLD_ID $FOO", { env: { FOO: "bar" } });
    const [w, a, id, foo] = b64(r.stdout_b64).trim().split(" ");
    expect([w, a, foo]).toEqual(["enabled", "test", "bar"]);
    expect(id).toBe(r.world_id);
  });

  test("DELETE /v1/worlds/:id tears the world down; the next execute builds a new one", async () => {
    const a = await exec("true");
    await agent.client.deleteWorld(a.world_id);
    expect(mountsUnder(join(agent.stateDir, "worlds", a.world_id))).toEqual([]);
    const b = await exec("true");
    expect(b.world_id).not.toBe(a.world_id);
    const listed = await agent.client.listWorlds();
    // Other agent_ids of this file have worlds of their own (issue 14.2): look at ours.
    expect(listed.map((w) => w.id)).toContain(b.world_id);
    expect(listed.map((w) => w.id)).not.toContain(a.world_id);
    // Each world reports its mounts as it sees them: system read-only, project read-write.
    expect(listed.find((w) => w.id === b.world_id)!.mounts).toEqual(expect.arrayContaining(["/usr ro", `${proj} rw`, "/ ro"]));
  });
});

describe("the world's own helpers", () => {
  test("the egress helper is outside the world's PID namespace: nothing to find, signal or ptrace", async () => {
    // Issue 15: the world's DNS stub/proxy runs in the world's netns only (agent/egress/helper.ts).
    const r = await exec("for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q '__egres[s]' && echo FOUND; done; true");
    expect(b64(r.stdout_b64)).toBe("");
  });
});

describe("robustness", () => {
  test("a session world whose control socket vanished is replaced, not reused", async () => {
    const a = await exec("true");
    rmSync(join(agent.stateDir, "worlds", a.world_id, "ctl.sock"));
    const b = await exec("echo healed");
    expect(b64(b.stdout_b64)).toBe("healed\n");
    expect(b.world_id).not.toBe(a.world_id);
  });

  test("a second agent on the same state dir does not sweep a live agent's worlds", async () => {
    const a = await exec("true");
    const other = await startAgent({ stateDir: agent.stateDir });
    await other.stop();
    const b = await exec("true");
    expect(b.world_id).toBe(a.world_id);
  });
});
