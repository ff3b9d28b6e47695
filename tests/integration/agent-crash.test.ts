/**
 * An agent killed with SIGKILL (no teardown at all) leaves no world behind: the spawners see
 * their lifeline close and exit, each world's PID namespace dies, and each world's egress
 * helper sees its gateway connection close and exits (issue 15: no veth, no dnsmasq). The
 * next agent sweeps the rest (world dirs, gateway socket dirs).
 */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { eventually, pidsMentioning, startAgent, tempProject } from "../helpers/agent.ts";
import { egressHelperPids } from "./_egress-fixture.ts";

test("SIGKILL of the agent takes its worlds and their egress helpers with it", async () => {
  const agent = await startAgent();
  const proj = tempProject();
  const r = await agent.client.execute({ cmd: "true", cwd: proj, agent_id: "crash" });
  const worldPids = pidsMentioning(r.world_id);
  expect(worldPids.length).toBeGreaterThan(0);
  const helpers = egressHelperPids(r.world_id);
  expect(helpers.length).toBe(1);

  agent.proc.kill("SIGKILL");
  await agent.proc.exited;
  await eventually(async () => {
    const alive = [...worldPids, ...helpers].filter((p) => {
      try {
        return readFileSync(`/proc/${p}/stat`, "utf8").split(" ")[2] !== "Z";
      } catch {
        return false;
      }
    });
    if (alive.length) throw new Error(`still alive: ${alive.join(" ")}`);
  }, 20_000);

  // A new agent on the same state dir sweeps what a crash leaves on disk.
  const next = await startAgent({ stateDir: agent.stateDir });
  await eventually(async () => {
    const left = [...readdirSync(`${agent.stateDir}/worlds`), ...readdirSync(`${agent.stateDir}/egress`)];
    if (left.length) throw new Error(`world/egress dirs left: ${left.join(" ")}`);
  }, 10_000);
  await next.stop();
  await agent.stop().catch(() => {});
  rmSync(proj, { recursive: true, force: true });
}, 60_000);
