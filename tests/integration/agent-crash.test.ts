/**
 * An agent killed with SIGKILL (no teardown at all) leaves no world behind: the spawners see
 * their lifeline close and exit, each world's PID namespace dies, dnsmasq (in that namespace)
 * dies with it, and the kernel removes the veths. The next agent sweeps the rest.
 */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { hostVethName } from "../../agent/world/net/index.ts";
import { eventually, pidsMentioning, startAgent, tempProject } from "../helpers/agent.ts";

test("SIGKILL of the agent takes its worlds, their dnsmasq and veths with it", async () => {
  const agent = await startAgent();
  const proj = tempProject();
  const r = await agent.client.execute({ cmd: "true", cwd: proj, agent_id: "crash" });
  const veth = hostVethName(r.world_id);
  const links = () => readdirSync("/sys/class/net");
  expect(links()).toContain(veth);
  const worldPids = pidsMentioning(r.world_id);
  expect(worldPids.length).toBeGreaterThan(0);
  const dnsmasq = pidsMentioning("dnsmasq").filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, "utf8").includes(veth.slice(3));
    } catch {
      return false;
    }
  });

  agent.proc.kill("SIGKILL");
  await agent.proc.exited;
  await eventually(async () => {
    const alive = [...worldPids, ...dnsmasq].filter((p) => {
      try {
        return readFileSync(`/proc/${p}/stat`, "utf8").split(" ")[2] !== "Z";
      } catch {
        return false;
      }
    });
    if (alive.length) throw new Error(`still alive: ${alive.join(" ")}`);
    if (links().includes(veth)) throw new Error(`veth ${veth} still there`);
  }, 20_000);

  // A new agent on the same state dir sweeps what a crash leaves on disk.
  const next = await startAgent({ stateDir: agent.stateDir });
  await eventually(async () => {
    const left = readdirSync(`${agent.stateDir}/worlds`);
    if (left.length) throw new Error(`world dirs left: ${left.join(" ")}`);
  }, 10_000);
  await next.stop();
  await agent.stop().catch(() => {});
  rmSync(proj, { recursive: true, force: true });
}, 60_000);
