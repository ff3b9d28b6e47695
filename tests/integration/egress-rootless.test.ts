/**
 * Rootless worlds get the same egress (issue 15): an agent running as a throwaway
 * unprivileged user; its world's spawner applies the lo-only netns + nft inside the world's
 * user namespace, the helper joins that namespace, the gateway (in the agent, as the user)
 * dials. Test hosts live in namespaces the fixture creates.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createEgressFixture, hostSnapshot, type EgressFixture } from "./_egress-fixture.ts";
import { agentArgv, hostArgv, pidsMentioning, startAgent, type TestAgent } from "../helpers/agent.ts";

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

  // The caller is the user (the agent-side policy gate runs as the caller): the CLI as that
  // user, with its policy in its own ~/.substrate.
  const policy = (extra: string[] = []) => {
    const dir = join(base, ".substrate", "policies");
    mkdirSync(dir, { recursive: true });
    const allowed = ["allowed.test", fx.cidr, "loop.test", ...extra].map((a) => JSON.stringify(a)).join(", ");
    writeFileSync(join(dir, "default.yaml"), `id: default\nname: D\nmode: observe\nnet:\n  allowed: [${allowed}]\n`);
    Bun.spawnSync(["chown", "-R", `${USER}:`, join(base, ".substrate")]);
  };
  const cli = (cmd: string) => {
    const env = [`HOME=${base}`, "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "SUBSTRATE_WORLD=enabled", `SUBSTRATE_WORLD_SOCKET=${agent.socket}`, `SUBSTRATE_TRACE=${join(base, "trace.jsonl")}`];
    const p = Bun.spawnSync(["runuser", "-u", USER, "--", "env", "-i", ...env, ...hostArgv(), "-c", cmd], { cwd: proj, stdout: "pipe", stderr: "pipe", timeout: 60_000 });
    return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
  };
  const worldIdOf = () => {
    const spans = readFileSync(join(base, "trace.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    return spans.filter((x) => x.world_id).pop()?.world_id as string;
  };

  test("an allowlisted name works with and without the proxy env; the world has lo only; commands run as the user", async () => {
    policy();
    const r = cli("curl -sS --max-time 10 http://allowed.test/; env -u http_proxy -u HTTP_PROXY curl -sS --max-time 10 http://allowed.test:80/; ls /sys/class/net; id -u");
    expect(r.err).not.toContain("blocked egress");
    expect(r.out).toBe(`ok 80\nok 80\nlo\n${Bun.spawnSync(["id", "-u", USER], { stdout: "pipe" }).stdout.toString().trim()}\n`);
  }, 60_000);

  test("a non-listed name: NXDOMAIN / 403, a rebinding name refused, UDP refused; one end-of-command line", async () => {
    policy();
    const r = cli(`getent hosts other.test; echo getent=$?; curl -sS --max-time 10 http://other.test/ | head -1; curl -sS --max-time 10 http://loop.test/ | head -1; timeout 3 bash -c 'echo x > /dev/udp/${fx.dnsIp}/53' 2>/dev/null; echo udp=$?`);
    expect(r.out).toContain("getent=2");
    expect(r.out).toContain('SUBSTRATE_EGRESS_DECISION {"decision":"deny","reason":"not_allowed","host":"other.test","port":80}');
    expect(r.out).toContain('"reason":"address_denied","host":"loop.test"');
    expect(r.out).not.toContain("udp=0");
    const lines = r.err.split("\n").filter((l) => l.includes("blocked egress"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("other.test:80 (not in net.allowed of policy default)");
    expect(lines[0]).toContain("loop.test:80 (resolves only to refused addresses)");
  }, 60_000);

  test("allowlist change → the next connection follows (same world)", async () => {
    policy();
    expect(cli("curl -sS --max-time 10 http://other.test/ | head -1").out).toContain("SUBSTRATE_EGRESS_DECISION");
    const w1 = worldIdOf();
    policy(["other.test"]);
    expect(cli("curl -sS --max-time 10 http://other.test/").out).toBe("ok 80\n");
    expect(worldIdOf()).toBe(w1);
  }, 60_000);

  test("the agent's stop leaves nothing; the host ruleset and sysctls are byte-identical", async () => {
    const id = worldIdOf();
    expect(pidsMentioning(id).length).toBeGreaterThan(0);
    // Every connection was handed over (one relay): the helper never fell back to relaying.
    expect(agent.stderr()).not.toMatch(/no socket handoff|socket handoff refused/);
    await agent.stop();
    expect(pidsMentioning(id)).toEqual([]);
    const after = await hostSnapshot();
    expect(after.ruleset).toBe(before.ruleset);
    expect(after.sysctls).toBe(before.sysctls);
  }, 60_000);
});
