/**
 * World network, for real (root): veth + /30, nft allowlist inside the world's netns, DNS
 * pinned to dnsmasq on 127.0.0.53, allowlist updates, IPv6 blocked, host untouched, clean
 * teardown. Test hosts live in namespaces the fixture creates (see _net-fixture.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { newWorldId } from "../../src/contract/common.ts";
import { addrList, linkExists, routeList } from "../../src/sys/ip.ts";
import { nft, nftSetElements } from "../../src/sys/nft.ts";
import { hostVethName, setupWorldNetwork, type WorldNetwork } from "../../agent/world/net/index.ts";
import { listLeases } from "../../agent/world/net/pool.ts";
import { createNetFixture, hostSnapshot, type NetFixture } from "./_net-fixture.ts";

const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)("world network", () => {
  let fx: NetFixture;
  let wn: WorldNetwork;
  let before: Awaited<ReturnType<typeof hostSnapshot>>;
  const worldId = newWorldId();
  const warnings: string[] = [];
  let v6Control = "";

  beforeAll(async () => {
    before = await hostSnapshot();
    fx = await createNetFixture();
    await fx.setZone({
      "allowed.test": { A: [fx.net(10)], AAAA: ["fd5b::10"], ttl: 30 },
      "www.allowed.test": { A: [fx.net(11)] },
      "blocked.test": { A: [fx.net(20)] },
      "late.test": { A: [fx.net(30)] },
      "a.wild.test": { A: [fx.net(40)] },
      "wild.test": { A: [fx.net(40)] },
    });
    // Control for the IPv6 test: before the world's firewall exists, the v6 path works.
    v6Control = (await fx.curl(`http://[${fx.v6Addr}]/`)).stdout;
    wn = await setupWorldNetwork({
      worldId,
      pid: fx.worldPid,
      allowedDomains: ["allowed.test", "*.wild.test"],
      upstreamDns: fx.dnsIp,
      runDir: fx.runDir,
      log: (m) => warnings.push(m),
    });
    // Routing to the test hosts (per-interface forwarding on the world's veth only).
    fx.allowForwarding(wn.hostVeth);
  }, 60_000);

  afterAll(async () => {
    await wn?.teardown().catch(() => {});
    await fx?.close();
  });

  test("the world has lo, eth0 with a /30 and a default route via the host side", async () => {
    expect(wn.hostVeth).toBe(hostVethName(worldId));
    expect(wn.hostVeth).toMatch(/^sbx[0-9a-f]{8}$/);
    expect(await linkExists(wn.hostVeth)).toBe(true);
    const addrs = await addrList({ netnsPid: fx.worldPid });
    const eth0 = addrs.find((a) => a.ifname === "eth0");
    expect(eth0?.addr_info.find((i) => i.family === "inet")).toMatchObject({ local: wn.worldAddr, prefixlen: 30 });
    expect(addrs.find((a) => a.ifname === "lo")?.addr_info.some((i) => i.local === "127.0.0.1")).toBe(true);
    const routes = await routeList({ netnsPid: fx.worldPid });
    expect(routes.find((r) => r.dst === "default")?.gateway).toBe(wn.hostAddr);
    expect(readFileSync(wn.resolvConfPath, "utf8")).toContain("nameserver 127.0.0.53");
    expect((await fx.inWorld(["cat", "/etc/resolv.conf"])).stdout).toContain("nameserver 127.0.0.53");
  });

  test("the table lives in the world's netns with the spec's shape", async () => {
    const text = await nft(["list", "table", "inet", "substrate"], { netnsPid: fx.worldPid });
    expect(text).toContain("set allowed_ips");
    expect(text).toContain("flags interval");
    expect(text).toMatch(/policy drop/);
    expect(text).toContain('oif "lo" accept');
    expect(text).toContain("drop all IPv6 egress");
    expect(await nftSetElements("inet", "substrate", "allowed_ips", { netnsPid: fx.worldPid })).toEqual([fx.net(10)]);
    expect(await nftSetElements("inet", "substrate", "allowed_ports", { netnsPid: fx.worldPid })).toEqual(
      expect.arrayContaining(["443", "80"]),
    );
  });

  test("an allowlisted name resolves through 127.0.0.53 and connects (80 and 443)", async () => {
    const q = await fx.dnsQuery("127.0.0.53", "allowed.test", "A");
    expect(q.rcode).toBe(0);
    expect(q.answers?.map((a) => a.data)).toEqual([fx.net(10)]);
    const r = await fx.curl("http://allowed.test/");
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("ok 80\n");
    expect((await fx.curl("http://allowed.test:443/")).stdout).toBe("ok 443\n");
    // dnsmasq asked upstream from inside the world (its source is the world's address).
    expect(fx.dnsLog.some((l) => l === `q allowed.test 1 from ${wn.worldAddr}`)).toBe(true);
  });

  test("a non-allowlisted name gets NXDOMAIN and is never forwarded upstream", async () => {
    const q = await fx.dnsQuery("127.0.0.53", "blocked.test", "A");
    expect(q.rcode).toBe(3);
    const r = await fx.curl("http://blocked.test/");
    expect(r.code).toBe(6); // curl: could not resolve host
    expect(fx.dnsLog.some((l) => l.startsWith("q blocked.test") && l.endsWith(wn.worldAddr))).toBe(false);
    // Exact entry: its subdomains are not allowed either.
    expect((await fx.dnsQuery("127.0.0.53", "www.allowed.test", "A")).rcode).toBe(3);
  });

  test("a raw IP not on the list is refused at once; allowed port only", async () => {
    const r = await fx.curl(`http://${fx.net(20)}/`);
    expect(r.code).toBe(7); // connection refused (TCP reset from the world's own table)
    expect((await fx.curl(`http://${fx.net(10)}:8080/`)).code).toBe(7);
  });

  test("the world cannot bypass the pinned resolver by asking upstream directly", async () => {
    const q = await fx.dnsQuery(fx.dnsIp, "blocked.test", "A");
    expect(q.error).toBeDefined();
    expect(q.rcode).toBeUndefined();
  });

  test("*.name allows subdomains (through dnsmasq's nftset) but not the apex", async () => {
    expect((await fx.dnsQuery("127.0.0.53", "wild.test", "A")).rcode).toBe(3);
    expect((await fx.curl("http://a.wild.test/")).stdout).toBe("ok 80\n");
    expect(await nftSetElements("inet", "substrate", "dns_ips", { netnsPid: fx.worldPid })).toContain(fx.net(40));
  });

  test("IPv6: AAAA answers are filtered and a v6 connect fails", async () => {
    expect(v6Control).toBe("ok 80\n"); // the path works without the world's table
    const q = await fx.dnsQuery("127.0.0.53", "allowed.test", "AAAA");
    expect(q.rcode).toBe(0);
    expect(q.answers).toEqual([]);
    const r = await fx.curl(`http://[${fx.v6Addr}]/`);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe("");
  });

  test("updating the allowlist takes effect for the next connection", async () => {
    expect((await fx.curl("http://late.test/")).code).toBe(6);
    await wn.update({ allowedDomains: ["allowed.test", "late.test"] });
    expect((await fx.curl("http://late.test/")).stdout).toBe("ok 80\n");

    await wn.update({ allowedDomains: ["late.test"] });
    expect((await fx.curl("http://allowed.test/")).code).toBe(6);
    expect((await fx.curl(`http://${fx.net(10)}/`)).code).toBe(7);
    // Wildcard entries dropped too: what dnsmasq had learnt is flushed with them.
    expect((await fx.curl(`http://${fx.net(40)}/`)).code).toBe(7);

    await wn.update({ allowedIps: [`${fx.net(20)}/32`] });
    expect((await fx.curl(`http://${fx.net(20)}/`)).stdout).toBe("ok 80\n");

    await wn.update({ ports: [8080] });
    expect((await fx.curl(`http://${fx.net(20)}/`)).code).toBe(7);
    expect((await fx.curl(`http://${fx.net(20)}:8080/`)).stdout).toBe("ok 8080\n");
    await wn.update({ ports: [443, 80], allowedIps: [] });
  });

  test("refresh() follows a changed DNS answer", async () => {
    await fx.setZone({ "late.test": { A: [fx.net(11)], ttl: 30 } });
    await wn.refresh();
    expect(await nftSetElements("inet", "substrate", "allowed_ips", { netnsPid: fx.worldPid })).toEqual([fx.net(11)]);
    expect((await fx.curl(`http://${fx.net(30)}/`)).code).toBe(7);
    expect((await fx.curl(`http://${fx.net(11)}/`)).stdout).toBe("ok 80\n");
  });

  test("info() matches the contract", async () => {
    const { WorldNetworkInfo } = await import("../../src/contract/net.ts");
    const i = WorldNetworkInfo.parse(await wn.info());
    expect(i.allowed_domains).toEqual(["late.test"]);
    expect(i.resolved_ips).toEqual([fx.net(11)]);
    expect(i.nat).toBe(false);
  });

  test("teardown leaves nothing: veth, dnsmasq, files, lease, netns; host ruleset byte-identical", async () => {
    const dnsmasqPid = wn.dnsmasqPid;
    const netnsIno = statSync(`/proc/${fx.worldPid}/ns/net`).ino;
    expect(existsSync(`/proc/${dnsmasqPid}`)).toBe(true);
    await wn.teardown();
    await wn.teardown(); // idempotent
    expect(await linkExists(wn.hostVeth)).toBe(false);
    expect(existsSync(`/proc/${dnsmasqPid}`)).toBe(false);
    expect(readdirSync(fx.runDir).filter((f) => f.startsWith("dnsmasq"))).toEqual([]);
    expect(listLeases().some((l) => l.lease?.world_id === worldId)).toBe(false);
    // The world keeps lo only; no route out.
    expect((await addrList({ netnsPid: fx.worldPid })).map((a) => a.ifname).filter((n) => n === "eth0")).toEqual([]);
    await fx.killWorld();
    // No process (dnsmasq especially) still holds the world's netns. The world's own child
    // dies asynchronously (--kill-child = PDEATHSIG), so wait for the kernel to reap it.
    const holdersOf = (): string[] =>
      readdirSync("/proc")
        .filter((d) => /^\d+$/.test(d))
        .filter((d) => {
          try {
            return statSync(`/proc/${d}/ns/net`).ino === netnsIno;
          } catch {
            return false;
          }
        });
    let holders = holdersOf();
    for (let i = 0; i < 300 && holders.length > 0; i++) {
      await Bun.sleep(10);
      holders = holdersOf();
    }
    expect(holders).toEqual([]);
    const after = await hostSnapshot();
    expect(after.ruleset).toBe(before.ruleset);
    expect(after.ipForward).toBe(before.ipForward);
    expect(warnings).toEqual([]);
  });
});
