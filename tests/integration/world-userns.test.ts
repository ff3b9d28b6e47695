/**
 * Issue 13: a root agent no longer maps a regular user's project into a user namespace: the
 * world belongs to its CALLER. This suite's caller is root (the test process), so root in the
 * world is root on the host with capabilities dropped, Landlock and seccomp, whoever owns the
 * project; regular callers are covered by tests/security/caller-identity.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chownSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { b64, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";
import { userNamespaceSupport } from "../../agent/world/userns.ts";

const UID = 1000; // the project owner: any regular (non-root) uid
let agent: TestAgent;
let proj: string;
let rootProj: string;
let overlayBase: string;

beforeAll(async () => {
  mkdirSync("/var/lib/substrate", { recursive: true });
  overlayBase = mkdtempSync("/var/lib/substrate/test-userns-overlay-");
  agent = await startAgent({ env: { SUBSTRATE_OVERLAY_DIR: overlayBase, SUBSTRATE_SPARE_TTL_SECS: "0" } });
  proj = tempProject();
  writeFileSync(`${proj}/mine.txt`, "v1\n");
  chownSync(`${proj}/mine.txt`, UID, UID);
  chownSync(proj, UID, UID);
  rootProj = tempProject();
});
afterAll(async () => {
  await agent.stop();
  for (const d of [proj, rootProj, overlayBase]) rmSync(d, { recursive: true, force: true });
});

describe.if(userNamespaceSupport().available)("user namespace worlds", () => {
  test("a uid-0 caller is root in the world, without a user namespace, on a user's project", async () => {
    const r = await agent.client.execute({
      cmd: "id -u; cat /proc/self/uid_map | head -1; echo new > new.txt; echo v2 >> mine.txt; touch /usr/x 2>&1 | grep -c 'Read-only'",
      cwd: proj,
      agent_id: "uns",
    });
    const [uid, map, ro] = b64(r.stdout_b64).trim().split("\n");
    expect(uid).toBe("0");
    expect(map!.trim().split(/\s+/)).toEqual(["0", "0", "4294967295"]);
    expect(ro).toBe("1");
    expect(statSync(`${proj}/new.txt`).uid).toBe(0);
    expect(statSync(`${proj}/mine.txt`).uid).toBe(UID);
  });

  test("isolated executes of such a project still work (root model for overlay worlds)", async () => {
    const r = await agent.client.execute({ cmd: "echo iso > iso.txt; rm mine.txt", cwd: proj, agent_id: "uns", isolated: true });
    expect(r.exit).toBe(0);
    expect(r.fs_diff!.writes).toEqual(["iso.txt"]);
    expect(r.fs_diff!.deletes).toEqual(["mine.txt"]);
    expect(statSync(`${proj}/mine.txt`).isFile()).toBe(true);
    await agent.client.discardFsDiff(r.span_id);
  });

  test("a root-owned project keeps the plain model (no user namespace)", async () => {
    const r = await agent.client.execute({ cmd: "cat /proc/self/uid_map", cwd: rootProj, agent_id: "uns" });
    expect(b64(r.stdout_b64).trim().split(/\s+/)).toEqual(["0", "0", "4294967295"]);
  });
});
