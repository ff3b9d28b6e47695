/**
 * Egress through the real agent (root): executes in a real world reach an allowlisted test
 * host through the world's gateway; a blocked name comes back in the execute result (the
 * CLI's end-of-command line) and as an `egress` span; the command's bytes land in its span's
 * egress_bytes and the agent's max_egress_bytes budget; concurrent commands are counted
 * apart; an allowlist change applies to the live world. Test hosts live in namespaces the
 * fixture creates (see _egress-fixture.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentApiError } from "../../src/api/client.ts";
import { createEgressFixture, egressHelperPids, hostSnapshot, type EgressFixture } from "./_egress-fixture.ts";
import { b64, pidsMentioning, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";
import { writeFileSync } from "node:fs";
import { policyEnv, substrate } from "./_policy-env.ts";

const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)("egress through the agent", () => {
  let fx: EgressFixture;
  let agent: TestAgent;
  let proj: string;
  let trace: string;
  let before: Awaited<ReturnType<typeof hostSnapshot>>;
  let allowed: string[];

  beforeAll(async () => {
    before = await hostSnapshot();
    fx = await createEgressFixture();
    await fx.setZone({ "allowed.test": { A: [fx.net(10)] }, "other.test": { A: [fx.net(20)] } });
    trace = join(mkdtempSync(join(tmpdir(), "substrate-egress-")), "trace.jsonl");
    agent = await startAgent({ env: { SUBSTRATE_WORLD_DNS_UPSTREAM: fx.dnsIp, SUBSTRATE_TRACE: trace } });
    proj = tempProject();
    allowed = ["allowed.test", fx.cidr];
  }, 60_000);
  afterAll(async () => {
    await agent?.stop();
    await fx?.close();
    rmSync(proj, { recursive: true, force: true });
    rmSync(join(trace, ".."), { recursive: true, force: true });
  });

  const world = (extra: string[] = []) => ({ project_dir: proj, allowed_domains: [...allowed, ...extra], egress: { policy_id: "test" } });
  const spans = () =>
    readFileSync(trace, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));

  test("an allowlisted name: reached through the gateway; bytes in the result, the span and the budget", async () => {
    const budget = { max_egress_bytes: 100_000 };
    const r = await agent.client.execute({
      cmd: "curl -sS --max-time 10 --data-binary @- http://allowed.test/; echo rc=$?",
      cwd: proj,
      agent_id: "egress",
      world: world(),
      budget,
      stdin_b64: Buffer.from("x".repeat(4000)).toString("base64"),
    });
    expect(b64(r.stdout_b64)).toBe("got 4000\nrc=0\n");
    expect(r.egress!.bytes_up).toBeGreaterThan(4000);
    expect(r.egress!.blocked).toEqual([]);
    const main = spans().find((s) => s.span_id === r.span_id && s.event_type === "command_complete");
    expect(main.egress_bytes).toBeGreaterThan(4000);
    const ev = spans().find((s) => s.event_type === "egress" && s.parent_span === r.span_id);
    expect(ev.egress).toMatchObject({ name: "allowed.test", port: 80, decision: "allow", command_span_id: r.span_id, policy_id: "test" });
    // The budget is charged: a second one that goes over it spends it, then the next is refused.
    await agent.client.execute({ cmd: `curl -sS -o /dev/null http://allowed.test/bytes/200000`, cwd: proj, agent_id: "egress", world: world(), budget });
    let status = 0;
    try {
      await agent.client.execute({ cmd: "echo should-not-run", cwd: proj, agent_id: "egress", world: world(), budget });
    } catch (e) {
      status = (e as AgentApiError).status;
    }
    expect(status).toBe(429);
  }, 60_000);

  test("a non-listed name: an immediate clear failure, a deny span, and the blocked list for the CLI line", async () => {
    const r = await agent.client.execute({ cmd: "curl -sS --max-time 10 https://other.test/; echo rc=$?", cwd: proj, agent_id: "egress2", world: world() });
    expect(b64(r.stdout_b64)).not.toContain("rc=0");
    expect(b64(r.stderr_b64)).toMatch(/403|blocked/i);
    expect(r.egress!.blocked).toContainEqual(expect.objectContaining({ name: "other.test", port: 443, reason: "not_allowed", policy_id: "test" }));
    expect(r.egress!.blocked[0]!.message).toContain("other.test:443 is not in net.allowed of policy test");
    // Without the proxy env (a tool that ignores it): NXDOMAIN from the stub, recorded too.
    const n = await agent.client.execute({ cmd: "env -u HTTPS_PROXY -u https_proxy -u ALL_PROXY -u all_proxy curl -sS --noproxy '*' --max-time 10 https://other.test/; echo rc=$?", cwd: proj, agent_id: "egress2", world: world() });
    expect(b64(n.stdout_b64)).toContain("rc=6");
    expect(n.egress!.blocked.some((b) => b.name === "other.test" && b.port === 0)).toBe(true);
    const deny = spans().find((s) => s.event_type === "egress" && s.egress.decision === "deny" && s.egress.name === "other.test" && s.egress.port === 443);
    expect(deny.egress).toMatchObject({ reason: "not_allowed", via: "proxy", command_span_id: r.span_id });
    expect(deny.egress.exe).toMatch(/curl$/); // a denial names the process
    expect(deny.egress.pid).toBeGreaterThan(0);
  }, 60_000);

  test("an allowlist change applies to the live world: same world, next connection follows", async () => {
    const a = await agent.client.execute({ cmd: "curl -sS --max-time 10 http://other.test/ | head -c 200", cwd: proj, agent_id: "egress3", world: world() });
    expect(b64(a.stdout_b64)).toContain("SUBSTRATE_EGRESS_DECISION");
    const b = await agent.client.execute({ cmd: "curl -sS --max-time 10 http://other.test/", cwd: proj, agent_id: "egress3", world: world(["other.test"]) });
    expect(b.world_id).toBe(a.world_id);
    expect(b64(b.stdout_b64)).toBe("ok 80\n");
  }, 60_000);

  test("the policy's egress_budget.total_bytes per command: the connection over it is cut (rate_limit span), the next refused", async () => {
    const w = { ...world(), egress: { policy_id: "test", total_bytes: 1 << 20 } };
    const r = await agent.client.execute({
      cmd: `curl -sS -o /dev/null -w '%{size_download}\n' http://allowed.test/bytes/${2 << 20}; echo rc=$?; curl -sS http://allowed.test/ | head -c 120; echo`,
      cwd: proj,
      agent_id: "egress-budget",
      world: w,
    });
    const out = b64(r.stdout_b64);
    expect(out).not.toContain("rc=0");
    expect(Number(out.split("\n")[0])).toBeLessThan(2 << 20);
    expect(out).toContain('"reason":"budget"');
    expect(r.egress!.bytes_down).toBeLessThan((1 << 20) + 1024 * 1024); // counted incl. the chunk that went over (not delivered)
    expect(r.egress!.blocked.some((b) => b.reason === "budget")).toBe(true);
    expect(spans().some((s) => s.event_type === "rate_limit" && s.parent_span === r.span_id && s.reason.includes("total_bytes"))).toBe(true);
    // The next command of the same world starts with a fresh budget.
    const next = await agent.client.execute({ cmd: "curl -sS http://allowed.test/", cwd: proj, agent_id: "egress-budget", world: w });
    expect(next.world_id).toBe(r.world_id);
    expect(b64(next.stdout_b64)).toBe("ok 80\n");
  }, 60_000);

  test("two concurrent commands in one world are counted apart", async () => {
    const one = (n: number) =>
      agent.client.execute({ cmd: `curl -sS -o /dev/null --limit-rate 2M http://allowed.test/bytes/${n}`, cwd: proj, agent_id: "egress4", world: world() });
    await one(10); // the world exists before the two race
    const [a, b] = await Promise.all([one(1 << 20), one(3 << 20)]);
    expect(a.world_id).toBe(b.world_id);
    expect(a.egress!.bytes_down).toBeGreaterThan(1 << 20);
    expect(a.egress!.bytes_down).toBeLessThan((1 << 20) + 64 * 1024);
    expect(b.egress!.bytes_down).toBeGreaterThan(3 << 20);
    expect(b.egress!.bytes_down).toBeLessThan((3 << 20) + 64 * 1024);
  }, 60_000);

  test("substrate -c: an allowlisted fetch works; a blocked one ends with ONE line naming name, port and policy", () => {
    const e = policyEnv();
    try {
      writeFileSync(join(proj, ".substrate-profile"), "egress\n");
      e.writePolicy("egress.yaml", `id: egress\nname: E\nmode: observe\nnet:\n  allowed: ["allowed.test", "${fx.cidr}"]\n`);
      const env = { SUBSTRATE_WORLD: "enabled", SUBSTRATE_WORLD_SOCKET: agent.socket, PATH: "/usr/local/bin:/usr/bin:/bin" };
      const ok = substrate(e, ["-c", "curl -sS --max-time 10 http://allowed.test/"], { cwd: proj, env });
      expect(ok).toMatchObject({ code: 0, out: "ok 80\n" });
      expect(ok.err).not.toContain("blocked egress");
      const bad = substrate(e, ["-c", "curl -sS --max-time 10 https://other.test/ >/dev/null 2>&1; curl -sS --max-time 10 https://other.test/ >/dev/null 2>&1; true"], { cwd: proj, env });
      expect(bad.code).toBe(0);
      const lines = bad.err.split("\n").filter((l) => l.includes("blocked egress"));
      expect(lines).toEqual(["substrate: blocked egress: other.test:443 (not in net.allowed of policy egress)"]);
    } finally {
      rmSync(join(proj, ".substrate-profile"), { force: true });
      e.cleanup();
    }
  }, 60_000);

  test("the agent's stop leaves nothing: no helper, no world; host ruleset and sysctls byte-identical", async () => {
    const r = await agent.client.execute({ cmd: "true", cwd: proj, agent_id: "egress5", world: world() });
    expect(pidsMentioning(r.world_id).length).toBeGreaterThan(0);
    const helpers = egressHelperPids(r.world_id);
    expect(helpers.length).toBe(1);
    // Every connection was handed over (one relay): the helper never fell back to relaying.
    expect(agent.stderr()).not.toMatch(/no socket handoff|socket handoff refused/);
    await agent.stop();
    expect(pidsMentioning(r.world_id)).toEqual([]);
    expect(helpers.filter((p) => existsSync(`/proc/${p}`))).toEqual([]);
    const after = await hostSnapshot();
    expect(after.ruleset).toBe(before.ruleset);
    expect(after.sysctls).toBe(before.sysctls);
  }, 60_000);
});
