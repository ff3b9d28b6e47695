/**
 * The policy gate in front of a real world agent: allowed commands run in the world, denied
 * ones never reach it (126), and an enforce-mode `commands.isolated` command never writes to
 * the host project (it runs in an isolated overlay world, or is refused while the agent cannot
 * run isolated worlds).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";
import { policyEnv, substrate, type PolicyEnv } from "./_policy-env.ts";

let agent: TestAgent;
let e: PolicyEnv;
let proj: string;

beforeAll(async () => {
  agent = await startAgent();
  e = policyEnv();
  proj = tempProject("substrate-policy-proj-");
  writeFileSync(join(proj, ".substrate-profile"), "world\n");
  e.writePolicy(
    "world.yaml",
    "id: world\nname: W\nmode: enforce\ncommands:\n  denied: ['sudo *']\n  isolated: ['touch isolated-*']\nexamples:\n  isolate: ['touch isolated-x']\n",
  );
});
afterAll(async () => {
  await agent.stop();
  e.cleanup();
  rmSync(proj, { recursive: true, force: true });
});

const inWorld = (args: string[]) =>
  substrate(e, args, { cwd: proj, env: { SUBSTRATE_WORLD: "enabled", SUBSTRATE_WORLD_SOCKET: agent.socket, PATH: "/usr/local/bin:/usr/bin:/bin" } });

describe("policy gate + world", () => {
  test("an allowed command runs in the world", () => {
    const r = inWorld(["-c", "echo in-world; touch session-file"]);
    expect(r.err).toBe("");
    expect(r).toMatchObject({ code: 0, out: "in-world\n" });
    expect(existsSync(join(proj, "session-file"))).toBe(true);
  });

  test("a denied command never reaches the world", () => {
    const r = inWorld(["-c", "touch should-not-exist && sudo id"]);
    expect(r.code).toBe(126);
    expect(r.err).toBe("substrate: denied by policy world: Command explicitly denied (pattern: sudo *)\n");
    expect(existsSync(join(proj, "should-not-exist"))).toBe(false);
  });

  test("enforce + isolated: the host project is never written", () => {
    const r = inWorld(["-c", "touch isolated-file"]);
    expect([0, 126]).toContain(r.code ?? -1);
    if (r.code === 126) expect(r.err).toContain("must run in an isolated world");
    expect(existsSync(join(proj, "isolated-file"))).toBe(false);
  });
});
