/**
 * The network module composed with a real world (World.create: unshare + spawner + pivot_root
 * + hardening), the way the world module should call it: setupWorldNetwork(pid = world.nsPid,
 * runDir = world.dir) after the world exists and before the first command; teardown before
 * the world is destroyed. Commands run through the world's own spawner.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WorldSpec } from "../../src/contract/world.ts";
import { World } from "../../agent/world/session.ts";
import type { WorldNetwork } from "../../agent/world/net/index.ts";
import { linkExists } from "../../src/sys/ip.ts";
import { createNetFixture, hostSnapshot, type NetFixture } from "./_net-fixture.ts";

const SPAWNER = join(import.meta.dir, "fixtures", "hardened-spawner.ts");
const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)("world network inside a real world", () => {
  let fx: NetFixture;
  let w: World;
  let wn: WorldNetwork;
  let stateDir: string;
  let project: string;
  let before: Awaited<ReturnType<typeof hostSnapshot>>;

  beforeAll(async () => {
    fx = await createNetFixture();
    before = await hostSnapshot();
    await fx.setZone({ "allowed.test": { A: [fx.net(10)] }, "blocked.test": { A: [fx.net(20)] } });
    stateDir = mkdtempSync(join(tmpdir(), "substrate-netw-state-"));
    project = mkdtempSync(join(tmpdir(), "substrate-netw-proj-"));
    w = await World.create({
      spec: WorldSpec.parse({ project_dir: project, isolate_network: true, allowed_domains: ["allowed.test"] }),
      stateDir,
      selfArgv: [process.execPath, SPAWNER],
      harden: { mode: "isolated", landlock: true },
      // World.create sets the network up itself (setupWorldNetwork after the spawner is
      // ready); the test only points DNS at its own upstream.
      network: { upstreamDns: fx.dnsIp },
      log: () => {},
    });
    expect(w.network).toBeDefined();
    wn = w.network!;
    fx.allowForwarding(wn.hostVeth);
  }, 60_000);

  afterAll(async () => {
    await w?.destroy();
    await fx?.close();
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(project, { recursive: true, force: true });
  });

  async function sh(cmd: string): Promise<{ exit: number; out: string }> {
    let out = "";
    const p = w.spawn(
      { argv: ["/bin/bash", "-c", cmd], cwd: project, env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/root" } },
      { onStdout: (b) => (out += Buffer.from(b).toString()), onStderr: (b) => (out += Buffer.from(b).toString()) },
    );
    const e = await p.exited;
    return { exit: e.exit, out };
  }

  test("resolv.conf is pinned; an allowlisted name connects, others fail", async () => {
    expect((await sh("cat /etc/resolv.conf")).out).toContain("nameserver 127.0.0.53");
    const ok = await sh("curl -sS --max-time 10 http://allowed.test/");
    expect(ok).toEqual({ exit: 0, out: "ok 80\n" });
    expect((await sh("curl -sS --max-time 10 http://blocked.test/")).exit).toBe(6);
    expect((await sh(`curl -sS --max-time 10 http://${fx.net(20)}/`)).exit).toBe(7);
  });

  test("teardown then destroy leaves the host as it was", async () => {
    await wn.teardown();
    expect(await linkExists(wn.hostVeth)).toBe(false);
    await w.destroy();
    const after = await hostSnapshot();
    expect(after.ruleset).toBe(before.ruleset);
    expect(after.links).toEqual(before.links);
  });
});
