/**
 * WorldSpec settings honoured by the real agent: fs_mode read_only, fs_isolation full vs
 * workspace, resource limits (a memory hog is OOM-killed, the agent and world live on),
 * isolate_network false shares the host's network namespace.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { b64, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

let agent: TestAgent;
let proj: string;
const cleanup: string[] = [];
beforeAll(async () => {
  agent = await startAgent();
  proj = tempProject();
  writeFileSync(`${proj}/f.txt`, "x\n");
});
afterAll(async () => {
  await agent.stop();
  for (const d of [proj, ...cleanup]) rmSync(d, { recursive: true, force: true });
});

const run = (cmd: string, world: Record<string, unknown> = {}) =>
  agent.client.execute({ cmd, cwd: proj, agent_id: "spec", world: { project_dir: proj, ...world } });

describe("WorldSpec", () => {
  test("fs_mode read_only: the project is readable but not writable", async () => {
    const r = await run("cat f.txt; { echo y > g.txt; } 2>&1; echo rc=$?", { fs_mode: "read_only" });
    expect(b64(r.stdout_b64)).toMatch(/^x\n.*Read-only file system\nrc=1\n$/s);
  });

  test("fs_isolation workspace hides other host dirs; full shows them read-only", async () => {
    // A host dir outside the system dirs and the project (under /var, which `full` shows;
    // not under /tmp, which every world replaces with its own tmpfs).
    mkdirSync("/var/lib/substrate", { recursive: true });
    const here = mkdtempSync("/var/lib/substrate/test-full-");
    cleanup.push(here);
    const ws = await run(`test -e ${here} && echo visible || echo hidden`);
    expect(b64(ws.stdout_b64)).toBe("hidden\n");
    const full = await run(`test -e ${here} && echo visible; touch ${here}/x 2>&1; echo rc=$?`, { fs_isolation: "full" });
    expect(b64(full.stdout_b64)).toMatch(/^visible\n.*Read-only file system\nrc=1\n$/s);
    expect(full.world_id).not.toBe(ws.world_id);
  });

  test("a memory limit OOM-kills the command; the world and the agent live on", async () => {
    const limits = { memory: "64Mi" };
    const r = await run("head -c 512M /dev/zero | tail -n 1 > /dev/null; echo survived=$?", { limits });
    // /dev/zero has no newline: tail buffers the whole "line" and is the one OOM-killed (137).
    expect(b64(r.stdout_b64)).toBe("survived=137\n");
    const again = await run("echo alive", { limits });
    expect(b64(again.stdout_b64)).toBe("alive\n");
    expect(again.world_id).toBe(r.world_id);
  });

  test("a pids limit stops a fork bomb; the agent survives and the next execute gets a world", async () => {
    const limits = { pids: 32 };
    // Bounded bomb: 300 background sleeps. Fork fails at pids.max. Bun (the world's spawner)
    // aborts when it cannot create a thread, so the world may die with the bomb: either the
    // command reports fewer than 300 jobs, or the agent answers 503 naming the cause.
    // (Issue 18.3: the world now survives, and bash retries a failed fork for ~15 s: the sleeps
    // must outlast that, or freed slots let all 300 start.)
    const bomb = "for i in $(seq 1 300); do sleep 100 2>/dev/null & done 2>/dev/null; jobs -p | wc -l; kill $(jobs -p) 2>/dev/null";
    try {
      const r = await run(bomb, { limits });
      expect(Number(b64(r.stdout_b64).trim())).toBeLessThan(300);
    } catch (e) {
      expect((e as { status?: number }).status).toBe(503);
      expect((e as Error).message).toContain("pids or memory limit");
    }
    const again = await run("echo alive", { limits });
    expect(b64(again.stdout_b64)).toBe("alive\n");
    expect((await agent.client.capabilities()).api_version).toBe("v1");
  });

  test("isolate_network false shares the host's network namespace; true has its own", async () => {
    const host = readlinkSync("/proc/self/ns/net");
    const shared = await run("readlink /proc/self/ns/net", { isolate_network: false });
    expect(b64(shared.stdout_b64).trim()).toBe(host);
    const own = await run("readlink /proc/self/ns/net; cat /etc/resolv.conf");
    expect(b64(own.stdout_b64)).not.toContain(host);
    expect(b64(own.stdout_b64)).toContain("nameserver 127.0.0.53");
  });
});
