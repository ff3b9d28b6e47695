/**
 * World network garbage collection, for real: a world that died without teardown (its
 * dnsmasq still pins the netns and the veth), an orphan veth of ours, the TTL callback, the
 * env defaults, and NAT's prerequisite check leaving nothing behind.
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { newWorldId } from "../../src/contract/common.ts";
import { ipBatch, linkDelete, linkExists } from "../../src/sys/ip.ts";
import { NetPrereqError, setupWorldNetwork, startNetnsGc } from "../../agent/world/net/index.ts";
import { listLeases, netStateDir } from "../../agent/world/net/pool.ts";
import { createNetFixture, hostSnapshot, type NetFixture } from "./_net-fixture.ts";

const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)("world network GC", () => {
  const fixtures: NetFixture[] = [];
  const fixture = async (): Promise<NetFixture> => {
    const f = await createNetFixture();
    fixtures.push(f);
    await f.setZone({ "allowed.test": { A: [f.net(10)] } });
    return f;
  };
  afterEach(async () => {
    for (const f of fixtures.splice(0)) await f.close();
  });
  afterAll(async () => {
    for (const f of fixtures.splice(0)) await f.close();
  });

  test("a world that died without teardown is collected: dnsmasq, veth, files, lease", async () => {
    const fx = await fixture();
    const worldId = newWorldId();
    const wn = await setupWorldNetwork({ worldId, pid: fx.worldPid, allowedDomains: ["allowed.test"], upstreamDns: fx.dnsIp, runDir: fx.runDir, log: () => {} });
    const dnsmasqPid = wn.dnsmasqPid;
    await fx.killWorld();
    // dnsmasq holds the dead world's netns, so the veth is still there: that is the leak GC fixes.
    expect(existsSync(`/proc/${dnsmasqPid}`)).toBe(true);
    expect(await linkExists(wn.hostVeth)).toBe(true);

    const gc = startNetnsGc({ intervalSecs: 0, ttlSecs: 0, log: () => {} });
    const report = await gc.sweep();
    gc.stop();
    expect(report.collected).toContain(worldId);
    expect(report.errors).toEqual([]);
    for (let i = 0; i < 100 && existsSync(`/proc/${dnsmasqPid}`); i++) await Bun.sleep(10);
    expect(existsSync(`/proc/${dnsmasqPid}`)).toBe(false);
    expect(await linkExists(wn.hostVeth)).toBe(false);
    expect(listLeases().some((l) => l.lease?.world_id === worldId)).toBe(false);
    expect(readdirSync(`${netStateDir()}/dns`).includes(wn.hostVeth.slice(3))).toBe(false);
    await wn.teardown(); // still safe afterwards
  });

  test("an orphan veth with our name pattern and no lease is deleted; others are not", async () => {
    const orphan = `sbx${Math.floor(Math.random() * 0xffffffff).toString(16).padStart(8, "0")}`;
    const other = `sbq${orphan.slice(3, 11)}`;
    await ipBatch([`link add ${orphan} type veth peer name ${other}`]);
    try {
      const report = await startNetnsGc({ intervalSecs: 0, log: () => {} }).sweep();
      expect(report.orphans).toContain(orphan);
      expect(await linkExists(orphan)).toBe(false);
    } finally {
      await linkDelete(orphan);
      await linkDelete(other);
    }
  });

  test("worlds older than the TTL are handed to destroyWorld", async () => {
    const fx = await fixture();
    const worldId = newWorldId();
    const wn = await setupWorldNetwork({ worldId, pid: fx.worldPid, allowedDomains: [], upstreamDns: fx.dnsIp, runDir: fx.runDir, log: () => {} });
    const destroyed: string[] = [];
    const gc = startNetnsGc({
      intervalSecs: 0,
      ttlSecs: 0.001,
      destroyWorld: async (id) => {
        destroyed.push(id);
        if (id === worldId) await wn.teardown();
      },
      log: () => {},
    });
    await Bun.sleep(5); // age > 1 ms
    const report = await gc.sweep();
    expect(report.expired).toContain(worldId);
    expect(destroyed).toContain(worldId);
    expect(await linkExists(wn.hostVeth)).toBe(false);
  });

  test("env: SUBSTRATE_NETNS_GC_INTERVAL_SECS / _TTL_SECS defaults and overrides", () => {
    const save = { i: process.env.SUBSTRATE_NETNS_GC_INTERVAL_SECS, t: process.env.SUBSTRATE_NETNS_GC_TTL_SECS };
    try {
      delete process.env.SUBSTRATE_NETNS_GC_INTERVAL_SECS;
      delete process.env.SUBSTRATE_NETNS_GC_TTL_SECS;
      const d = startNetnsGc({ log: () => {} });
      expect([d.intervalSecs, d.ttlSecs]).toEqual([600, 0]);
      d.stop();
      process.env.SUBSTRATE_NETNS_GC_INTERVAL_SECS = "0";
      process.env.SUBSTRATE_NETNS_GC_TTL_SECS = "3600";
      const o = startNetnsGc({ log: () => {} });
      expect([o.intervalSecs, o.ttlSecs]).toEqual([0, 3600]);
      o.stop();
      process.env.SUBSTRATE_NETNS_GC_INTERVAL_SECS = "soon";
      expect(() => startNetnsGc()).toThrow(/SUBSTRATE_NETNS_GC_INTERVAL_SECS/);
    } finally {
      if (save.i === undefined) delete process.env.SUBSTRATE_NETNS_GC_INTERVAL_SECS;
      else process.env.SUBSTRATE_NETNS_GC_INTERVAL_SECS = save.i;
      if (save.t === undefined) delete process.env.SUBSTRATE_NETNS_GC_TTL_SECS;
      else process.env.SUBSTRATE_NETNS_GC_TTL_SECS = save.t;
    }
  });

  test("NAT opt-in without host IPv4 forwarding fails with an actionable error and leaves nothing", async () => {
    const fx = await fixture();
    const before = await hostSnapshot();
    if (before.ipForward === "1") return; // this host forwards already: nothing to check here
    const worldId = newWorldId();
    const err = await setupWorldNetwork({ worldId, pid: fx.worldPid, allowedDomains: [], upstreamDns: fx.dnsIp, runDir: fx.runDir, nat: true, log: () => {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetPrereqError);
    expect((err as Error).message).toContain("net.ipv4.ip_forward");
    expect((err as NetPrereqError).exitCode).toBe(4);
    const after = await hostSnapshot();
    expect(after).toEqual(before);
    expect(listLeases().some((l) => l.lease?.world_id === worldId)).toBe(false);
  });

  test("bad input is a config error before anything is created", async () => {
    const fx = await fixture();
    const base = { worldId: newWorldId(), pid: fx.worldPid, upstreamDns: fx.dnsIp, runDir: fx.runDir, log: () => {} };
    await expect(setupWorldNetwork({ ...base, allowedDomains: ["exa mple.com"] })).rejects.toThrow(/not a host name/);
    await expect(setupWorldNetwork({ ...base, allowedDomains: [], allowedIps: ["1.2.3.4; flush ruleset"] })).rejects.toThrow(/not an IPv4/);
    await expect(setupWorldNetwork({ ...base, allowedDomains: [], ports: [0] })).rejects.toThrow(/not a TCP port/);
    await expect(setupWorldNetwork({ ...base, allowedDomains: [], pid: process.pid })).rejects.toThrow(/shares the agent's network namespace/);
    expect(listLeases().some((l) => l.lease?.world_id === base.worldId)).toBe(false);
  });
});
