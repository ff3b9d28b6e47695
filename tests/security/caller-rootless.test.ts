/**
 * Issue 13, rootless agents: a user's own agent (no root anywhere) ran every command as uid 0
 * of its user namespace. Now uid N inside = N outside (bubblewrap's default), no capability in
 * any thread of the spawner or the command, and root inside only when the policy asks
 * (`world.root_inside`). Judged from the host: /proc of the spawner's tasks, file ownership.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { pidsMentioning } from "../helpers/agent.ts";
import { apiAs, createUser, out, shAs, startRootlessAgent, type RootlessAgent, type TestUser } from "./_users.ts";

let u: TestUser;
let agent: RootlessAgent;
let proj: string;

beforeAll(async () => {
  u = createUser("sbcr");
  proj = join(u.home, "proj");
  shAs(u, `mkdir -p ${proj}`);
  agent = await startRootlessAgent(u);
});
afterAll(async () => {
  await agent?.stop();
  u?.remove();
});

const exec = (cmd: string, world: Record<string, unknown> = {}) =>
  apiAs(u, agent.socket, "POST", "/v1/execute", { agent_id: "rootless", cwd: proj, cmd, world: { isolate_network: false, ...world } });

describe("a rootless agent's world", () => {
  test("commands run as the user's own uid, with no capabilities; files land owned by the user", () => {
    const r = exec("id -u; head -1 /proc/self/uid_map; grep CapEff /proc/self/status; echo x > made");
    expect(r.status).toBe(200);
    const [id, map, cap] = out(r).trim().split("\n");
    expect(id).toBe(String(u.uid));
    expect(map!.trim().split(/\s+/)).toEqual([String(u.uid), String(u.uid), "1"]);
    expect(cap).toMatch(/CapEff:\s+0+$/);
    expect(statSync(join(proj, "made")).uid).toBe(u.uid);
  });

  test("every thread of its spawner holds no capability either (host view)", () => {
    const r = exec("true");
    const pids = pidsMentioning(`__world-serve\0{"id":"${r.body.world_id}"`);
    expect(pids.length).toBe(1);
    for (const t of readdirSync(`/proc/${pids[0]}/task`)) {
      const st = readFileSync(`/proc/${pids[0]}/task/${t}/status`, "utf8");
      expect(/^CapEff:\s*(\S+)/m.exec(st)![1]).toMatch(/^0+$/);
      expect(/^CapPrm:\s*(\S+)/m.exec(st)![1]).toMatch(/^0+$/);
      expect(/^NoNewPrivs:\s*(\S+)/m.exec(st)![1]).toBe("1");
    }
  });

  test("root inside only when the policy asks (world.root_inside)", () => {
    const r = exec("id -u; head -1 /proc/self/uid_map", { root_inside: true });
    expect(r.status).toBe(200);
    const [id, map] = out(r).trim().split("\n");
    expect(id).toBe("0");
    expect(map!.trim().split(/\s+/)).toEqual(["0", String(u.uid), "1"]);
  });
});
