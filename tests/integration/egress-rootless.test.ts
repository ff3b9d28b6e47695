/**
 * Rootless worlds get the same egress (issue 15): an agent running as a throwaway
 * unprivileged user; its world's spawner applies the lo-only netns + nft inside the world's
 * user namespace, the helper joins that namespace, the gateway (in the agent, as the user)
 * dials. Test hosts live in namespaces the fixture creates.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createEgressFixture, hostSnapshot, type EgressFixture } from "./_egress-fixture.ts";
import { agentArgv, b64, pidsMentioning, startAgent, type TestAgent } from "../helpers/agent.ts";

const isRoot = process.getuid?.() === 0;
const USER = `sbxeg${process.pid % 100000}`;

describe.skipIf(!isRoot)("egress in a rootless world", () => {
  let fx: EgressFixture;
  let agent: TestAgent;
  let base: string;
  let proj: string;
  let created = false;
  let before: Awaited<ReturnType<typeof hostSnapshot>>;

  beforeAll(async () => {
    before = await hostSnapshot();
    fx = await createEgressFixture();
    await fx.setZone({ "allowed.test": { A: [fx.net(10)] }, "other.test": { A: [fx.net(20)] }, "loop.test": { A: ["127.0.0.1"] } });
    base = mkdtempSync(join(tmpdir(), "substrate-egress-rl-"));
    chmodSync(base, 0o755);
    const r = Bun.spawnSync(["useradd", "-M", "-d", base, "-s", "/bin/bash", USER], { stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`useradd: ${r.stderr.toString()}`);
    created = true;
    proj = join(base, "proj");
    mkdirSync(proj);
    mkdirSync(join(base, "run"));
    Bun.spawnSync(["chown", "-R", `${USER}:`, base]);
    const sock = join(base, "run", "agent.sock");
    agent = await startAgent({
      launcher: ["runuser", "-u", USER, "--", "env", `HOME=${base}`, `SUBSTRATE_WORLD_DNS_UPSTREAM=${fx.dnsIp}`, `SUBSTRATE_TRACE=${join(base, "trace.jsonl")}`, "SUBSTRATE_OVERLAY_DIR=" + join(base, "overlay"), "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"],
      argv: [...agentArgv(), "--listen", sock],
      socket: sock,
      stateDir: join(base, "state"),
      env: { SUBSTRATE_OVERLAY_DIR: join(base, "overlay") },
    });
  }, 90_000);

  afterAll(async () => {
    await agent?.stop();
    await fx?.close();
    if (created) Bun.spawnSync(["userdel", USER]);
    if (base) rmSync(base, { recursive: true, force: true });
  });

  const world = (extra: string[] = []) => ({ project_dir: proj, allowed_domains: ["allowed.test", fx.cidr, "loop.test", ...extra], egress: { policy_id: "rl" } });
  const exec = (cmd: string, extra: string[] = []) => agent.client.execute({ cmd, cwd: proj, agent_id: "rl", world: world(extra) });

  test("an allowlisted name works with and without the proxy env; the world has lo only", async () => {
    const r = await exec("curl -sS --max-time 10 http://allowed.test/; env -u http_proxy -u HTTP_PROXY curl -sS --max-time 10 http://allowed.test:80/; ls /sys/class/net; id -u");
    expect(b64(r.stdout_b64)).toBe(`ok 80\nok 80\nlo\n${Bun.spawnSync(["id", "-u", USER], { stdout: "pipe" }).stdout.toString().trim()}\n`);
    expect(r.egress!.bytes_down).toBeGreaterThan(0);
  }, 60_000);

  test("a non-listed name: NXDOMAIN / 403 and the blocked list; a rebinding name refused; UDP refused", async () => {
    const r = await exec(`getent hosts other.test; echo getent=$?; curl -sS --max-time 10 http://other.test/ | head -1; curl -sS --max-time 10 http://loop.test/ | head -1; timeout 3 bash -c 'echo x > /dev/udp/${fx.dnsIp}/53' 2>/dev/null; echo udp=$?`);
    const out = b64(r.stdout_b64);
    expect(out).toContain("getent=2");
    expect(out).toContain('SUBSTRATE_EGRESS_DECISION {"decision":"deny","reason":"not_allowed","host":"other.test","port":80}');
    expect(out).toContain('"reason":"address_denied","host":"loop.test"');
    expect(out).not.toContain("udp=0");
    expect(r.egress!.blocked.map((b) => b.name)).toEqual(expect.arrayContaining(["other.test", "loop.test"]));
  }, 60_000);

  test("allowlist change → the next connection follows (same world)", async () => {
    const a = await exec("curl -sS --max-time 10 http://other.test/ | head -1");
    const b = await exec("curl -sS --max-time 10 http://other.test/", ["other.test"]);
    expect(b.world_id).toBe(a.world_id);
    expect(b64(b.stdout_b64)).toBe("ok 80\n");
  }, 60_000);

  test("the agent's stop leaves nothing; the host ruleset and sysctls are byte-identical", async () => {
    const r = await exec("true");
    await agent.stop();
    expect(pidsMentioning(r.world_id)).toEqual([]);
    const after = await hostSnapshot();
    expect(after.ruleset).toBe(before.ruleset);
    expect(after.sysctls).toBe(before.sysctls);
  }, 60_000);
});
