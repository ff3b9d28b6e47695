/**
 * Issue 14.2: a process left running by one command (`setsid … &`) survived it and read the
 * environment, the scope token (/proc/<pid>/fd/3) and the command lines of another agent's
 * later commands in the same session world. Now worlds belong to one (uid, agent_id), and a
 * command's leftovers die when it ends — whatever session or process group they made — unless
 * the request keeps them (`keep_background`). Judged on the host: which processes still exist,
 * and what a spy managed to write into the project.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { b64, eventually, pidsMentioning, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

let agent: TestAgent;
let proj: string;
const tag = `${process.pid}${Date.now() % 100000}`;

beforeAll(async () => {
  agent = await startAgent();
  proj = tempProject();
});
afterAll(async () => {
  await agent.stop();
});

/** Host pids running `sleep <n>` (argv joined by NULs in /proc/<pid>/cmdline, or one `sh -c` string). */
const sleepers = (n: string): number[] => [...new Set([...pidsMentioning(`sleep\0${n}`), ...pidsMentioning(`sleep ${n}`)])];

const run = (cmd: string, o: Record<string, unknown> = {}) => agent.client.execute({ cmd, cwd: proj, agent_id: "left", ...o });

describe("what a command leaves running", () => {
  test("dies when it ends: a plain &, a setsid'd daemon, a double fork, nohup — none survive on the host", async () => {
    // (the check can fail: with keep_background the same processes are found, see the next test)
    const r = await run(
      [
        `sleep 3${tag}1 &`,
        `setsid sleep 3${tag}2 >/dev/null 2>&1 < /dev/null &`,
        `(setsid sh -c 'sleep 3${tag}3' >/dev/null 2>&1 &)`,
        `nohup sleep 3${tag}4 >/dev/null 2>&1 &`,
        "sleep 0.2; echo started",
      ].join("\n"),
    );
    expect(b64(r.stdout_b64)).toBe("started\n");
    // Host view: no such process anywhere (eventually: SIGKILL delivery is asynchronous).
    await eventually(async () => {
      for (const n of [1, 2, 3, 4]) expect(sleepers(`3${tag}${n}`)).toEqual([]);
    }, 5000);
    const again = await run(`pgrep -f 'slee[p] 3${tag}' || echo none`);
    expect(b64(again.stdout_b64)).toBe("none\n");
  });

  test("keep_background keeps them (a dev server) until the world ends", async () => {
    const r = await run(`setsid sleep 3${tag}5 >/dev/null 2>&1 < /dev/null & echo ok`, { keep_background: true });
    expect(b64(r.stdout_b64)).toBe("ok\n");
    const seen = await run(`pgrep -f 'slee[p] 3${tag}5' >/dev/null && echo alive`);
    expect(b64(seen.stdout_b64)).toBe("alive\n");
    expect(sleepers(`3${tag}5`).length).toBe(1);
    await agent.client.deleteWorld(r.world_id);
    await eventually(async () => expect(sleepers(`3${tag}5`)).toEqual([]), 5000);
  });

  test("a kept spy in agent A's world sees nothing of agent B's commands (environment, token, command line)", async () => {
    const spy = join(proj, `spy-${tag}.txt`);
    // Agent A leaves a reader of every process's environ, fd 3 and cmdline, for 2 s.
    await run(
      `setsid sh -c 'for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do for p in /proc/[0-9]*; do tr "\\0" " " < $p/environ; cat $p/fd/3; tr "\\0" " " < $p/cmdline; echo; done 2>/dev/null; sleep 0.1; done > ${spy}' >/dev/null 2>&1 < /dev/null &`,
      { agent_id: "agent-a", keep_background: true },
    );
    // Agent B, same user, same project, while the spy runs.
    const b = await run(`echo $B_SECRET >/dev/null; sleep 1; echo b-cmdline-marker-${tag} >/dev/null`, {
      agent_id: "agent-b",
      env: { B_SECRET: `b-secret-${tag}` },
    });
    expect(b.exit).toBe(0);
    await eventually(async () => expect(existsSync(spy) && readFileSync(spy, "utf8").length > 0).toBe(true), 5000);
    await Bun.sleep(1500);
    const seen = readFileSync(spy, "utf8");
    expect(seen).not.toContain(`b-secret-${tag}`);
    expect(seen).not.toContain(`b-cmdline-marker-${tag}`);
    expect(seen).not.toContain("agent-b");
  });
});
