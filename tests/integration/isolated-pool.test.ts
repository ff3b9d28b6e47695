/**
 * The pool of pre-warmed isolated worlds (agent/world/spares.ts) through a real agent:
 * the second isolated execute of a spec runs in the spare built after the first (its world id
 * was listed before the execute asked), every isolated execute still starts from the host
 * project as it is (fresh upper dir; host edits made while a spare waited are visible; apply
 * drops spares), spares expire after SUBSTRATE_SPARE_TTL_SECS, 0 turns the pool off, and
 * nothing is left once the agent stops (world dirs, overlay dirs, egress helpers and sockets, cgroups).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { WorldManager } from "../../agent/world/manager.ts";
import { WorldSpec } from "../../src/contract/world.ts";
import { agentArgv, b64, eventually, mountsUnder, pidsMentioning, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

const bases: string[] = [];
const projects: string[] = [];

function overlayBase(): string {
  mkdirSync("/var/lib/substrate", { recursive: true });
  const b = mkdtempSync("/var/lib/substrate/test-pool-");
  bases.push(b);
  return b;
}

function project(): string {
  const p = tempProject("substrate-pool-");
  projects.push(p);
  writeFileSync(join(p, "existing.txt"), "old\n");
  writeFileSync(join(p, "replaced.txt"), "v1\n");
  writeFileSync(join(p, "doomed.txt"), "bye\n");
  return p;
}

/** The spare: an isolated world listed by the agent that has served no execute. */
async function spareOf(agent: TestAgent, exclude: string[] = []): Promise<string> {
  return eventually(async () => {
    const s = (await agent.client.listWorlds()).filter((w) => w.isolated && w.execs === 0 && !exclude.includes(w.id));
    if (s.length !== 1) throw new Error(`expected one spare, got ${JSON.stringify(s)}`);
    return s[0]!.id;
  });
}

/** Every trace of a world on the host (empty = gone). */
async function leftovers(agent: TestAgent, base: string, id: string): Promise<string[]> {
  const out: string[] = [];
  if (existsSync(join(agent.stateDir, "worlds", id))) out.push("world dir");
  if (existsSync(join(base, id))) out.push("overlay dir");
  // Issue 15: no veth or dnsmasq any more; the egress helper names its world in its argv.
  if (existsSync(join(agent.stateDir, "egress", id))) out.push("egress socket dir");
  if (pidsMentioning(id).length) out.push("processes (spawner, egress helper)");
  if (mountsUnder(id).length) out.push("mounts");
  for (const c of readdirSync("/sys/fs/cgroup")) {
    if (existsSync(join("/sys/fs/cgroup", c, "substrate", id))) out.push(`cgroup ${c}`);
  }
  return out;
}

afterAll(() => {
  for (const d of [...bases, ...projects]) rmSync(d, { recursive: true, force: true });
});

describe("pool on (TTL 60 s)", () => {
  let agent: TestAgent;
  let base: string;
  let proj: string;
  const seen = new Set<string>();
  let firstSpan = "";

  beforeAll(async () => {
    base = overlayBase();
    proj = project();
    agent = await startAgent({ env: { SUBSTRATE_OVERLAY_DIR: base, SUBSTRATE_SPARE_TTL_SECS: "60" } });
  });

  afterAll(async () => {
    if (agent) await agent.stop();
  });

  const exec = (cmd: string) => agent.client.execute({ cmd, cwd: proj, agent_id: "pool", isolated: true });

  test("the second isolated execute runs in the world pre-warmed after the first, from a pristine project", async () => {
    const r1 = await exec("echo one > one.txt && echo more >> existing.txt");
    expect(r1.exit).toBe(0);
    expect(r1.fs_diff!.writes).toEqual(["one.txt"]);
    seen.add(r1.world_id);
    firstSpan = r1.span_id;
    const spare = await spareOf(agent);
    expect(spare).not.toBe(r1.world_id);
    seen.add(spare);
    // Its own fresh overlay dir: an empty upper, no result.
    expect(readdirSync(join(base, spare, "upper"))).toEqual([]);
    expect(existsSync(join(base, spare, "result.json"))).toBe(false);

    const r2 = await exec("test ! -e one.txt && echo absent; cat existing.txt; echo two > two.txt");
    expect(r2.world_id).toBe(spare); // the pre-warmed world served it
    // capabilities.worlds: one miss then one hit; spares are created worlds, never executes.
    const w = (await agent.client.capabilities()).worlds;
    expect(w.spares).toMatchObject({ ttl_secs: 60, hits: 1, misses: 1 });
    expect(w.executes).toBe(2);
    expect(w.created).toBeGreaterThanOrEqual(2);
    expect(b64(r2.stdout_b64)).toBe("absent\nold\n");
    expect(r2.fs_diff).toMatchObject({ writes: ["two.txt"], mods: [], deletes: [] });
    // The host project is untouched; both results are kept apart.
    expect(readFileSync(join(proj, "existing.txt"), "utf8")).toBe("old\n");
    expect(existsSync(join(proj, "one.txt"))).toBe(false);
    expect(existsSync(join(proj, "two.txt"))).toBe(false);
    expect((await agent.client.fsDiff(r1.span_id)).writes).toEqual(["one.txt"]);
    await agent.client.discardFsDiff(r2.span_id);
  });

  test("host edits made while a spare waited are visible in it", async () => {
    const spare = await spareOf(agent, [...seen]);
    seen.add(spare);
    writeFileSync(join(proj, "existing.txt"), "edited\n"); // in place
    writeFileSync(join(proj, "replaced.tmp"), "v2\n");
    renameSync(join(proj, "replaced.tmp"), join(proj, "replaced.txt")); // a new inode
    writeFileSync(join(proj, "added.txt"), "added\n");
    rmSync(join(proj, "doomed.txt"));
    const r = await exec("cat existing.txt replaced.txt added.txt; test ! -e doomed.txt && echo deleted; ls");
    expect(r.world_id).toBe(spare);
    expect(b64(r.stdout_b64)).toBe("edited\nv2\nadded\ndeleted\nadded.txt\nexisting.txt\nreplaced.txt\n");
    expect(r.fs_diff).toMatchObject({ writes: [], mods: [], deletes: [] });
    await agent.client.discardFsDiff(r.span_id);
  });

  test("apply drops the spares: the next execute sees the applied file", async () => {
    const spare = await spareOf(agent, [...seen]);
    seen.add(spare);
    await agent.client.applyFsDiff(firstSpan, ["one.txt"]);
    expect(readFileSync(join(proj, "one.txt"), "utf8")).toBe("one\n");
    await eventually(async () => {
      const l = await leftovers(agent, base, spare);
      if (l.length) throw new Error(`spare ${spare} still has: ${l.join(", ")}`);
    });
    const r = await exec("cat one.txt");
    expect(r.world_id).not.toBe(spare);
    expect(b64(r.stdout_b64)).toBe("one\n");
    seen.add(r.world_id);
    await agent.client.discardFsDiff(r.span_id);
  });

  test("the agent's stop destroys the spares: no world dir, overlay dir, egress helper or cgroup left", async () => {
    seen.add(await spareOf(agent, [...seen]));
    await agent.client.discardFsDiff(firstSpan);
    await agent.stop();
    for (const id of seen) expect(await leftovers(agent, base, id)).toEqual([]);
    expect(readdirSync(base)).toEqual([]);
    expect(existsSync(join(agent.stateDir, "worlds")) ? readdirSync(join(agent.stateDir, "worlds")) : []).toEqual([]);
  });
});

test("stopping the agent while a spare is still warming leaves nothing behind", async () => {
  const base = overlayBase();
  const proj = project();
  const agent = await startAgent({ env: { SUBSTRATE_OVERLAY_DIR: base, SUBSTRATE_SPARE_TTL_SECS: "60" } });
  const r = await agent.client.execute({ cmd: "true", cwd: proj, agent_id: "stop", isolated: true });
  // Warming starts inside the execute (its overlay dir first): the spare's id is known at once.
  const spare = readdirSync(base).filter((n) => n !== r.world_id);
  expect(spare).toHaveLength(1);
  await agent.stop(); // while the spare's world (netns, egress helper) is being built
  for (const id of [r.world_id, spare[0]!]) {
    const l = await leftovers(agent, base, id);
    expect(l.filter((x) => !(id === r.world_id && x === "overlay dir"))).toEqual([]); // the result stays
  }
  expect(readdirSync(base)).toEqual([r.world_id]);
});

test("a spare unused for the TTL is destroyed with its overlay dir", async () => {
  const base = overlayBase();
  const proj = project();
  const agent = await startAgent({ env: { SUBSTRATE_OVERLAY_DIR: base, SUBSTRATE_SPARE_TTL_SECS: "1" } });
  try {
    const r = await agent.client.execute({ cmd: "true", cwd: proj, agent_id: "ttl", isolated: true });
    await agent.client.discardFsDiff(r.span_id);
    const spare = await spareOf(agent);
    // Expiry, not a duration: wait (bounded) until the spare and everything it held is gone.
    await eventually(async () => {
      const l = await leftovers(agent, base, spare);
      if (l.length || (await agent.client.listWorlds()).length) throw new Error(`spare ${spare} still has: ${l.join(", ")}`);
    });
    expect(readdirSync(base)).toEqual([]);
    // The pool keeps working after an expiry: a cold world now, a spare again after it.
    const r2 = await agent.client.execute({ cmd: "true", cwd: proj, agent_id: "ttl", isolated: true });
    expect(r2.world_id).not.toBe(spare);
    await agent.client.discardFsDiff(r2.span_id);
    await spareOf(agent, [spare]);
  } finally {
    await agent.stop();
  }
  expect(readdirSync(base)).toEqual([]);
});

test("SUBSTRATE_SPARE_TTL_SECS=0 turns the pool off", async () => {
  const base = overlayBase();
  const proj = project();
  const agent = await startAgent({ env: { SUBSTRATE_OVERLAY_DIR: base, SUBSTRATE_SPARE_TTL_SECS: "0" } });
  try {
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await agent.client.execute({ cmd: "true", cwd: proj, agent_id: "off", isolated: true, world: { isolate_network: false } });
      ids.push(r.world_id);
      // A spare's overlay dir would exist before the response (warming starts inside the
      // execute): only the results are there, and no world is left running.
      expect(readdirSync(base).sort()).toEqual([...ids].sort());
      expect(await agent.client.listWorlds()).toEqual([]);
    }
    expect(ids[0]).not.toBe(ids[1]);
    expect((await agent.client.capabilities()).worlds).toMatchObject({ executes: 2, created: 2, spares: { ttl_secs: 0, spares: 0, hits: 0, misses: 0, warmed: 0 } });
  } finally {
    await agent.stop();
  }
});

test("at most `max` spares in all: warming one more drops the oldest (WorldManager in process)", async () => {
  const state = mkdtempSync(join(tmpdir(), "substrate-pool-state-"));
  const base = overlayBase();
  const m = new WorldManager({ stateDir: state, selfArgv: agentArgv(), spareTtlMs: 60_000, spareMax: 1 });
  try {
    const a = WorldSpec.parse({ project_dir: project(), isolate_network: false });
    const b = WorldSpec.parse({ project_dir: project(), isolate_network: false });
    m.spares.warm(a, base);
    const first = await eventually(async () => {
      const l = m.list();
      if (l.length !== 1) throw new Error(`worlds: ${l.length}`);
      return l[0]!.id;
    });
    m.spares.warm(b, base);
    await eventually(async () => {
      if (m.list().some((w) => w.id === first) || existsSync(join(base, first))) throw new Error(`${first} is still there`);
    });
    expect(m.spares.stats()).toMatchObject({ spares: 1, dropped: 1 });
    const iso = await m.isolated(b, base);
    expect(iso.prewarmed).toBe(true);
    expect(iso.world.spec.project_dir).toBe(b.project_dir);
    await m.release(iso.world);
    rmSync(iso.overlay.dir, { recursive: true, force: true });
  } finally {
    await m.shutdown();
  }
  expect(readdirSync(base)).toEqual([]);
  expect(readdirSync(join(state, "worlds"))).toEqual([]);
  rmSync(state, { recursive: true, force: true });
});
