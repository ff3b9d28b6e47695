/**
 * World network costs (root): setupWorldNetwork (veth + /30, nft table, dnsmasq ready, first
 * resolver pass), an allowlist update (servers file + SIGHUP + marker wait + one nft
 * transaction), an IP-only update (one nft transaction) and teardown. Baseline of the same
 * run: creating and deleting a bare veth pair with one `ip -batch` (the irreducible part).
 * Test hosts (DNS upstream) come from the integration fixture. Prints figures, never fails.
 *
 *   node_modules/.bin/bun bench/net.ts [runs=10]
 */
import { newWorldId } from "../src/contract/common.ts";
import { ipBatch } from "../src/sys/ip.ts";
import { setupWorldNetwork } from "../agent/world/net/index.ts";
import { createNetFixture } from "../tests/integration/_net-fixture.ts";
import { figure, report } from "./_stats.ts";

const RUNS = Number(process.argv[2] ?? 10);
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);

async function bareNetns(): Promise<{ pid: number; kill: () => Promise<void> }> {
  const p = Bun.spawn(["unshare", "--net", "--fork", "--kill-child", "--", "sleep", "infinity"], { stdin: "ignore" });
  // unshare(2) happens before the fork: wait until the process's netns differs from ours.
  const self = (await Bun.file("/proc/self/ns/net").exists()) ? (await import("node:fs")).statSync("/proc/self/ns/net").ino : 0;
  for (let i = 0; i < 500; i++) {
    try {
      if ((await import("node:fs")).statSync(`/proc/${p.pid}/ns/net`).ino !== self) break;
    } catch {}
    await Bun.sleep(1);
  }
  return {
    pid: p.pid,
    kill: async () => {
      p.kill("SIGKILL");
      await p.exited;
    },
  };
}

const fx = await createNetFixture();
try {
  await fx.setZone({ "allowed.test": { A: [fx.net(10)] }, "late.test": { A: [fx.net(30)] } });
  const base: number[] = [];
  const setup: number[] = [];
  const updDomains: number[] = [];
  const updIps: number[] = [];
  const teardown: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    let t = performance.now();
    await ipBatch(["link add sbzbench type veth peer name sbzbenchp", "link del sbzbench"]);
    base.push(performance.now() - t);

    const w = await bareNetns();
    try {
      t = performance.now();
      const wn = await setupWorldNetwork({
        worldId: newWorldId(),
        pid: w.pid,
        allowedDomains: ["allowed.test"],
        upstreamDns: fx.dnsIp,
        runDir: `${fx.runDir}/w${i}`,
        log: () => {},
      });
      setup.push(performance.now() - t);
      t = performance.now();
      await wn.update({ allowedDomains: ["allowed.test", "late.test"] });
      updDomains.push(performance.now() - t);
      t = performance.now();
      await wn.update({ allowedIps: [`${fx.net(20)}/32`] });
      updIps.push(performance.now() - t);
      t = performance.now();
      await wn.teardown();
      teardown.push(performance.now() - t);
    } finally {
      await w.kill();
    }
  }
  const b = figure("net: bare veth add+del (baseline)", sorted(base));
  report(b);
  for (const [name, xs] of [
    ["net: setupWorldNetwork", setup],
    ["net: update allowedDomains (dnsmasq + nft)", updDomains],
    ["net: update allowedIps (one nft transaction)", updIps],
    ["net: teardown", teardown],
  ] as const) {
    const f = figure(name, sorted(xs));
    report({ ...f, baseline: "bare veth add+del", ratio: f.median_ms / b.median_ms });
  }
} finally {
  await fx.close();
}
