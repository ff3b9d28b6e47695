/**
 * ATTACK (issue 15): reaching host-only services through an allowlisted name. Names the
 * policy allows resolve to the host's loopback, to an address of the host itself, to the
 * cloud metadata address, or rebind from a test host to 127.0.0.1 between two connections;
 * IP literals aim at the host too. The policy even names the host's own range. Judged on the
 * host: listeners on the host's 127.0.0.1 and on its own interface address never see a
 * connection.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { createEgressFixture, type EgressFixture } from "../integration/_egress-fixture.ts";
import { b64, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)("egress: the address guard", () => {
  let fx: EgressFixture;
  let agent: TestAgent;
  let proj: string;
  let hostAddr: string;
  const hits: string[] = [];
  const listeners: Array<{ stop(f?: boolean): void }> = [];
  const PORT = 18000 + Math.floor(Math.random() * 1000);

  beforeAll(async () => {
    fx = await createEgressFixture();
    hostAddr = `10.251.${fx.k}.1`; // the host's end of the test link: one of the host's own addresses
    await fx.setZone({
      "loop.test": { A: ["127.0.0.1"] },
      "host.test": { A: [hostAddr] },
      "meta.test": { A: ["169.254.169.254"] },
      "mixed.test": { A: ["127.0.0.1", hostAddr] },
      "rebind.test": { A: [fx.net(10)], ttl: 0 },
    });
    for (const hostname of ["127.0.0.1", hostAddr]) {
      listeners.push(
        Bun.listen({
          hostname,
          port: PORT,
          socket: {
            open(s) {
              hits.push(hostname);
              s.end("host-only service\n");
            },
            data() {},
          },
        }),
      );
    }
    agent = await startAgent({ env: { SUBSTRATE_WORLD_DNS_UPSTREAM: fx.dnsIp } });
    proj = tempProject();
  }, 60_000);
  afterAll(async () => {
    for (const l of listeners) l.stop(true);
    await agent?.stop();
    await fx?.close();
    rmSync(proj, { recursive: true, force: true });
  });

  const allowed = () => ["loop.test:*", "host.test:*", "meta.test:*", "mixed.test:*", "rebind.test:*", fx.cidr, `10.251.0.0/16:*`, "127.0.0.0/8:*", "169.254.0.0/16:*"];
  const exec = (cmd: string) => agent.client.execute({ cmd, cwd: proj, agent_id: "guard", world: { project_dir: proj, allowed_domains: allowed() } });

  test("names resolving to the host's loopback, its own address or the metadata address are refused", async () => {
    const r = await exec(
      [
        ...["loop.test", "host.test", "meta.test", "mixed.test"].map((n) => `curl -sS --max-time 5 http://${n}:${PORT}/ 2>&1 | head -c 300; echo`),
        ...["loop.test", "host.test"].map((n) => `env -u http_proxy -u HTTP_PROXY curl -sS --max-time 5 --noproxy '*' http://${n}:${PORT}/ 2>&1 | head -c 100; echo`),
        `curl -sS --max-time 5 http://${hostAddr}:${PORT}/ 2>&1 | head -c 300; echo`,
        `curl -sS --max-time 5 --noproxy '*' http://${hostAddr}:${PORT}/ 2>&1 | head -c 100; echo`,
        `curl -sS --max-time 5 http://169.254.169.254/latest/meta-data/ 2>&1 | head -c 300; echo`,
      ].join("; "),
    );
    const out = b64(r.stdout_b64);
    expect(out).not.toContain("host-only service");
    expect(out).toContain('"reason":"address_denied","host":"loop.test"');
    expect(r.egress!.blocked.filter((b) => b.reason === "address_denied").map((b) => b.name)).toEqual(
      expect.arrayContaining(["loop.test", "host.test", "meta.test", "mixed.test", hostAddr, "169.254.169.254"]),
    );
    expect(hits).toEqual([]);
  }, 60_000);

  test("DNS rebinding: the second connection of a name that now answers 127.0.0.1 is refused", async () => {
    const first = await exec(`curl -sS --max-time 5 http://rebind.test/`);
    expect(b64(first.stdout_b64)).toBe("ok 80\n");
    await fx.setZone({ "rebind.test": { A: ["127.0.0.1"], ttl: 0 } });
    await Bun.sleep(1100); // past the gateway's resolve cache (bounded by the answer's TTL)
    const second = await exec(`curl -sS --max-time 5 http://rebind.test:${PORT}/ 2>&1 | head -c 300`);
    expect(b64(second.stdout_b64)).toContain("address_denied");
    expect(hits).toEqual([]);
  }, 60_000);
});
