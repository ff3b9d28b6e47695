/**
 * Issue 14.1, last line: "no process reachable from a world has the host's mount namespace as
 * its root". The old dnsmasq sat in the world's PID namespace with the host's root; its
 * successor, the egress helper, is reachable from every world (DNS on 127.0.0.53, the proxy
 * ports). Judged from the host: the root directory of every process that serves a world.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { b64, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

let agent: TestAgent;
let proj: string;
beforeAll(async () => {
  agent = await startAgent();
  proj = tempProject();
});
afterAll(async () => {
  await agent?.stop();
});

/** Host pids whose argv has `mode` as an argument and which live in the world's netns. */
function inWorldNet(worldPid: number, mode: string): number[] {
  const net = readlinkSync(`/proc/${worldPid}/ns/net`);
  return readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .map(Number)
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0").includes(mode) && readlinkSync(`/proc/${p}/ns/net`) === net;
      } catch {
        return false;
      }
    });
}

test("the egress helper serving a world has no host root (and the world's DNS still works)", async () => {
  const r = await agent.client.execute({ cmd: "echo $$; getent hosts not-allowed.example >/dev/null || echo nx", cwd: proj, agent_id: "h" });
  expect(b64(r.stdout_b64)).toContain("nx"); // the stub answered (NXDOMAIN), so the helper is up
  const spawner = readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .find((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, "utf8").includes(`__world-serve\0{"id":"${r.world_id}"`);
      } catch {
        return false;
      }
    });
  expect(spawner).toBeDefined();
  const helpers = inWorldNet(Number(spawner), "__egress");
  expect(helpers.length).toBeGreaterThan(0);
  for (const h of helpers) {
    expect(readlinkSync(`/proc/${h}/root`)).not.toBe("/");
    // and it is neither root nor dumpable-by-others: its status shows a non-zero uid
    expect(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${h}/status`, "utf8"))![1]).not.toBe("0");
  }
});
