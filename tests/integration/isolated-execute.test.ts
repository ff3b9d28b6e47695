/**
 * Isolated execution through the real agent: the project is an overlay, the host project is
 * untouched, the response carries the fs_diff, and the result can be fetched, applied (per
 * path) and discarded over /v1/fs_diff/:span_id. Mount is EPERM in isolated worlds.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { b64, mountsUnder, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

let agent: TestAgent;
let proj: string;
let overlayBase: string;

const get = async (path: string, method = "GET", body?: unknown) => {
  const res = await fetch(`http://localhost${path}`, {
    method,
    unix: agent.socket,
    body: body === undefined ? undefined : JSON.stringify(body),
  } as RequestInit);
  return { status: res.status, body: (await res.json()) as any };
};

beforeAll(async () => {
  // On disk (not tmpfs): /var/lib is the product default; tests use their own dir beside it.
  mkdirSync("/var/lib/substrate", { recursive: true });
  overlayBase = mkdtempSync("/var/lib/substrate/test-overlay-");
  agent = await startAgent({ env: { SUBSTRATE_OVERLAY_DIR: overlayBase } });
  proj = tempProject();
  writeFileSync(join(proj, "existing.txt"), "old\n");
  writeFileSync(join(proj, "gone.txt"), "bye\n");
});

afterAll(async () => {
  await agent.stop();
  expect(mountsUnder(overlayBase)).toEqual([]);
  // The agent's stop discards its pre-warmed spares' overlay dirs too (agent/world/spares.ts).
  expect(readdirSync(overlayBase)).toEqual([]);
  rmSync(overlayBase, { recursive: true, force: true });
  rmSync(proj, { recursive: true, force: true });
});

describe("isolated execute", () => {
  let span: string;
  let wid: string;

  test("writes stay in the overlay; the response carries the diff", async () => {
    const r = await agent.client.execute({
      cmd: "echo new > new.txt && echo more >> existing.txt && rm gone.txt && mkdir -p d && echo x > d/f && cat existing.txt",
      cwd: proj,
      agent_id: "iso",
      isolated: true,
    });
    expect(r.exit).toBe(0);
    expect(b64(r.stdout_b64)).toBe("old\nmore\n");
    expect(r.fs_diff).toBeDefined();
    expect(r.fs_diff!.writes).toEqual(expect.arrayContaining(["new.txt", "d/f"]));
    expect(r.fs_diff!.mods).toEqual(["existing.txt"]);
    expect(r.fs_diff!.deletes).toEqual(["gone.txt"]);
    // The host project is untouched.
    expect(readFileSync(join(proj, "existing.txt"), "utf8")).toBe("old\n");
    expect(existsSync(join(proj, "gone.txt"))).toBe(true);
    expect(existsSync(join(proj, "new.txt"))).toBe(false);
    // The isolated world is gone; no session world was created for it.
    expect((await agent.client.listWorlds()).map((w) => w.id)).not.toContain(r.world_id);
    span = r.span_id;
    wid = r.world_id;
  });

  test("GET /v1/fs_diff/:span_id returns the same diff", async () => {
    const d = await get(`/v1/fs_diff/${span}`);
    expect(d.status).toBe(200);
    expect(d.body.mods).toEqual(["existing.txt"]);
  });

  test("apply per path lands exactly those paths; a path not in the diff is refused", async () => {
    const bad = await get(`/v1/fs_diff/${span}/apply`, "POST", { paths: ["nope.txt"] });
    expect(bad.status).toBe(400);
    expect(existsSync(join(proj, "new.txt"))).toBe(false);
    const ok = await get(`/v1/fs_diff/${span}/apply`, "POST", { paths: ["new.txt", "gone.txt"] });
    expect(ok.status).toBe(200);
    expect(ok.body.applied).toEqual(["gone.txt", "new.txt"]);
    expect(readFileSync(join(proj, "new.txt"), "utf8")).toBe("new\n");
    expect(existsSync(join(proj, "gone.txt"))).toBe(false);
    expect(readFileSync(join(proj, "existing.txt"), "utf8")).toBe("old\n");
  });

  test("discard removes the result; then 404", async () => {
    const d = await get(`/v1/fs_diff/${span}/discard`, "POST");
    expect(d.body).toEqual({ discarded: true });
    expect((await get(`/v1/fs_diff/${span}`)).status).toBe(404);
    // What may remain are pre-warmed spares' fresh dirs (agent/world/spares.ts), never a result.
    const left = readdirSync(overlayBase);
    expect(left).not.toContain(wid);
    for (const n of left) expect(existsSync(join(overlayBase, n, "result.json"))).toBe(false);
  });

  test("mount is EPERM in an isolated world; writing outside the project fails even as root", async () => {
    const r = await agent.client.execute({
      cmd: "mount -t tmpfs none /tmp 2>&1; echo rc=$?; touch /etc/x 2>&1; echo rc=$?; grep -E 'NoNewPrivs|Seccomp:' /proc/self/status",
      cwd: proj,
      agent_id: "iso",
      isolated: true,
    });
    const out = b64(r.stdout_b64);
    expect(out).toMatch(/mount: .*(permission denied|Operation not permitted|must be superuser)/i);
    expect(out.match(/rc=(\d+)/g)!.every((m) => m !== "rc=0")).toBe(true);
    expect(out).toContain("NoNewPrivs:\t1");
    expect(out).toContain("Seccomp:\t2");
    await get(`/v1/fs_diff/${r.span_id}/discard`, "POST");
  });

  test("a bad span id is a 400, an unknown one a 404", async () => {
    expect((await get("/v1/fs_diff/nope")).status).toBe(400);
    expect((await get("/v1/fs_diff/spn_01a201d7-0914-7685-9914-b1d030c99d52")).status).toBe(404);
  });
});
