/**
 * Issue 18.3: a world survives its own fork bomb. Commands run in the world's command cgroup
 * (`<world>/cmds`, pids.max = the caller's limit); the world's own processes (unshare, init,
 * the spawner and its threads) sit outside it with headroom, so when the bomb exhausts the
 * commands' limit the spawner can still create threads, the command ends (timeout), and the
 * NEXT command runs in the SAME world.
 *
 * Judged by the kernel's own counters: pids.events "max" of the command cgroup counts the
 * forks it refused (the bomb hit the limit), that of the world cgroup stays 0 (the world's
 * own processes never did). No wall-clock assertions: the command ends its own bomb (a sleep
 * started before it, then `kill -9 0`, both shell builtins that need no fork).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { detectCgroupMode } from "../../agent/world/cgroups.ts";
import { b64, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

let agent: TestAgent;
let proj: string;
beforeAll(async () => {
  agent = await startAgent();
  proj = tempProject();
});
afterAll(async () => {
  await agent.stop();
  rmSync(proj, { recursive: true, force: true });
});

/** The world's cgroup dir in the hierarchy that holds pids (v1: the pids mount; v2: the unified tree). */
function worldPidsDir(worldId: string): string | undefined {
  const roots = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"];
  const find = (dir: string, depth: number): string | undefined => {
    let kids: string[];
    try {
      kids = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch {
      return undefined;
    }
    if (kids.includes(worldId) && dir.endsWith("/substrate")) return join(dir, worldId);
    if (depth >= 5) return undefined;
    for (const k of kids) {
      if (k.startsWith("wld_") || k === "cmds" || k === "spawner" || k.startsWith("lima-emu")) continue;
      const r = find(join(dir, k), depth + 1);
      if (r) return r;
    }
    return undefined;
  };
  for (const r of roots) {
    if (!existsSync(join(r, "pids.max")) && !existsSync(join(r, "cgroup.procs"))) continue;
    const d = find(r, 0);
    if (d && existsSync(join(d, "pids.max"))) return d;
  }
  return undefined;
}
/**
 * Forks refused in `dir` itself: v1 counts a refused fork in the forking task's cgroup; v2
 * (pids.events hierarchical) has pids.events.local for that.
 */
const eventsMax = (dir: string): number => {
  const f = existsSync(join(dir, "pids.events.local")) ? "pids.events.local" : "pids.events";
  return Number(/^max (\d+)/m.exec(readFileSync(join(dir, f), "utf8"))?.[1] ?? NaN);
};
/** ...in `dir` and every cgroup below it (commands may sit in per-command leaves below cmds). */
const eventsMaxTree = (dir: string): number =>
  eventsMax(dir) + readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).reduce((n, e) => n + eventsMaxTree(join(dir, e.name)), 0);

const run = (cmd: string, limits: Record<string, unknown>) =>
  agent.client.execute({ cmd, cwd: proj, agent_id: "bomb", world: { project_dir: proj, limits } });

describe.if(detectCgroupMode() !== "none")("a fork bomb in a world", () => {
  test("is bounded by the command cgroup; the world and its spawner survive; the next command runs in the same world", async () => {
    const limits = { pids: 64 };
    const first = await run("echo ready", limits);
    const world = first.world_id!;
    const dir = worldPidsDir(world);
    expect(dir).toBeDefined();
    const cmds = join(dir!, "cmds");
    expect(readFileSync(join(cmds, "pids.max"), "utf8").trim()).toBe("64");
    expect(Number(readFileSync(join(dir!, "pids.max"), "utf8").trim())).toBeGreaterThan(64);

    // The classic bomb, unbounded by itself: only the limit stops it; after 4 s the command
    // kills its whole process group (the bomb included).
    const bomb = await run("sleep 4 & s=$!; (b(){ b | b & }; b) 2>/dev/null & wait $s; kill -9 0", limits);
    expect(bomb.world_id).toBe(world);
    expect(bomb.exit).not.toBe(0);
    expect(eventsMaxTree(cmds)).toBeGreaterThan(0); // the bomb hit the commands' limit...
    expect(eventsMax(dir!)).toBe(0); // ...and the world's own processes never hit theirs

    // The same world serves the next command (no 503, no fresh world).
    const again = await run("echo alive; cat /proc/self/cgroup", limits);
    expect(again.world_id).toBe(world);
    expect(b64(again.stdout_b64)).toStartWith("alive\n");
    // (The world has its own cgroup namespace: the command cgroup shows as .../cmds.)
    expect(b64(again.stdout_b64)).toMatch(/^(\d+:pids|0:):.*\/cmds(\/[^/\n]+)?$/m);
    expect((await agent.client.capabilities()).api_version).toBe("v1");
  }, 120_000);
});
