/**
 * Attack (issue 18.3): a command tries to lift its own limit — leave the command cgroup for the
 * world's (which has the spawner's headroom), raise its pids.max, mount a cgroup hierarchy of
 * its own, or use a cgroup fd inherited from the spawner. Judged on the HOST: the attacker's
 * process is still in `<world>/cmds` (per /proc/<pid>/cgroup as the host sees it) and the
 * command cgroup's pids.max is unchanged.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, rmSync } from "node:fs";
import { detectCgroupMode } from "../../agent/world/cgroups.ts";
import { b64, pidsMentioning, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

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

const MARK = "7771337";

describe.if(detectCgroupMode() !== "none")("a command cannot lift its own cgroup limit", () => {
  test("leaving cmds, raising pids.max, mounting a hierarchy, inherited cgroup fds: all refused; the host sees it still bounded", async () => {
    const attack = [
      // every cgroup dir the world can see, and its parents
      `for d in /sys/fs/cgroup /sys/fs/cgroup/* /sys/fs/cgroup/*/..; do echo $$ > $d/cgroup.procs 2>/dev/null && echo "moved:$d"; echo $$ > $d/tasks 2>/dev/null && echo "moved-task:$d"; done`,
      `for f in /sys/fs/cgroup/pids.max /sys/fs/cgroup/*/pids.max /sys/fs/cgroup/*/cmds/pids.max /sys/fs/cgroup/cmds/pids.max; do echo max > $f 2>/dev/null && echo "raised:$f"; done`,
      `mkdir -p /tmp/cg && mount -t cgroup -o pids none /tmp/cg 2>/dev/null && echo mounted-v1`,
      `mount -t cgroup2 none /tmp/cg 2>/dev/null && echo mounted-v2`,
      `for fd in /proc/self/fd/*; do l=$(readlink $fd); case "$l" in *cgroup*|*/tasks|*pids*) echo "fd:$l";; esac; done`,
      `sleep ${MARK} & echo bg`,
    ].join("; ");
    const r = await agent.client.execute({ cmd: attack, cwd: proj, agent_id: "attacker", keep_background: true, world: { project_dir: proj, limits: { pids: 64 } } });
    const out = b64(r.stdout_b64);
    expect(out).not.toMatch(/moved|raised|mounted|fd:/);
    expect(out).toContain("bg");

    // On the host: the background process is in the world's command cgroup (pids hierarchy)...
    const [pid] = pidsMentioning(MARK);
    expect(pid).toBeDefined();
    const cg = readFileSync(`/proc/${pid}/cgroup`, "utf8");
    const pidsLine = cg.split("\n").find((l) => /^\d+:pids:/.test(l)) ?? cg.split("\n").find((l) => l.startsWith("0::"))!;
    expect(pidsLine).toMatch(new RegExp(`/substrate/${r.world_id}/cmds(/|$)`));
    // ...whose limit is what the caller asked for.
    const mount = pidsLine.startsWith("0::") ? "/sys/fs/cgroup" : "/sys/fs/cgroup/pids";
    const path = pidsLine.split(":").slice(2).join(":");
    const cmds = `${mount}${path.slice(0, path.indexOf("/cmds") + "/cmds".length)}`;
    expect(readFileSync(`${cmds}/pids.max`, "utf8").trim()).toBe("64");
  }, 60_000);
});
