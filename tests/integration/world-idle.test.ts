/**
 * Issue 18.6: idle session worlds are retired (agent/world/idle.ts), with a real agent whose
 * TTL is 1 s (SUBSTRATE_WORLD_IDLE_SECS=1):
 * - a command that runs longer than the TTL keeps its world (the clock starts when it ends);
 * - an idle world is torn down completely: its background processes, its dir, its cgroup;
 * - the count shows in capabilities (worlds.idle) and `substrate world status --json`;
 * - the next execute for the project gets a fresh world.
 * No wall-clock assertions: "eventually" polls the agent's own counters and the host's /proc.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { WorldStatusReport } from "../../src/contract/index.ts";
import { b64, eventually, hostArgv, pidsMentioning, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

let agent: TestAgent;
let proj: string;
beforeAll(async () => {
  agent = await startAgent({ env: { SUBSTRATE_WORLD_IDLE_SECS: "1" } });
  proj = tempProject();
});
afterAll(async () => {
  await agent.stop();
  rmSync(proj, { recursive: true, force: true });
});

// keep_background: the command's background processes outlive it (issue 14.2 kills them at exit otherwise).
const run = (cmd: string) => agent.client.execute({ cmd, cwd: proj, agent_id: "idle", keep_background: true, world: { project_dir: proj, isolate_network: false } });
const idleStats = async () => (await agent.client.capabilities()).worlds.idle!;
/** Any cgroup dir named after the world, in any hierarchy (v1: one per controller). */
function cgroupsOf(world: string): string[] {
  const found: string[] = [];
  const walk = (d: string, depth: number) => {
    let kids: string[] = [];
    try {
      kids = readdirSync(d, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch {}
    for (const k of kids) {
      if (k === world) found.push(join(d, k));
      else if (depth < 5 && !k.startsWith("wld_") && !k.startsWith("lima-emu")) walk(join(d, k), depth + 1);
    }
  };
  walk("/sys/fs/cgroup", 0);
  return found;
}

describe("idle session worlds", () => {
  test("the TTL is in capabilities", async () => {
    expect(await idleStats()).toMatchObject({ ttl_secs: 1, retired: 0 });
  });

  test("a command longer than the TTL keeps its world; once idle the world goes, with its background processes, dir and cgroup", async () => {
    // 3 s of work > 1 s TTL: the world is not retired under the command (it completes), and
    // the command leaves a background process behind.
    const first = await run("sleep 3; sleep 3133731 >/dev/null 2>&1 & echo done");
    expect(b64(first.stdout_b64)).toBe("done\n");
    expect(first.exit).toBe(0);
    const world = first.world_id!;
    expect(pidsMentioning("3133731").length).toBe(1); // the background process runs on
    expect(existsSync(join(agent.stateDir, "worlds", world))).toBe(true);
    expect(cgroupsOf(world).length).toBeGreaterThan(0);

    await eventually(async () => {
      const s = await idleStats();
      if (s.retired < 1) throw new Error(`not retired yet: ${JSON.stringify(s)}`);
    });
    const caps = await agent.client.capabilities();
    expect(caps.worlds.active).toBe(0);
    expect(caps.worlds.idle).toMatchObject({ ttl_secs: 1, idle: 0, retired: 1 });
    // `retired` counts worlds once torn down: nothing of it is left.
    expect(pidsMentioning("3133731")).toEqual([]);
    expect(existsSync(join(agent.stateDir, "worlds", world))).toBe(false);
    expect(cgroupsOf(world)).toEqual([]);

    // world status shows the count (the agent's own numbers).
    const st = Bun.spawnSync([...hostArgv(), "world", "status", "--json"], { env: { ...process.env, SUBSTRATE_WORLD_SOCKET: agent.socket }, stdout: "pipe", stderr: "pipe" });
    const rep = WorldStatusReport.parse(JSON.parse(st.stdout.toString()));
    expect(rep.idle).toEqual({ ttl_secs: 1, idle: 0, retired: 1 });
    expect(rep.worlds).toEqual([]);

    // The project's next execute gets a fresh world.
    const next = await run("echo fresh");
    expect(b64(next.stdout_b64)).toBe("fresh\n");
    expect(next.world_id).not.toBe(world);
  }, 90_000);
});
