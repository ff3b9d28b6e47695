/**
 * ATTACK (issue 15, socket handoff): the in-world helper hands each accepted connection to the
 * gateway with SCM_RIGHTS (agent/egress/fdpass.ts). A hijacked helper has the world's token and
 * both gateway sockets; it tries to make the gateway splice something that is not a world
 * connection, or to get a name the policy refuses: a listening socket, a socket accepted on
 * another port, a Unix socket, a TCP socket of another network namespace, two descriptors in
 * one message, a request with no socket, a "transparent" claim of a destination the socket was
 * never redirected to, a refused name on a genuine socket. Judged by effect: a counting server
 * on a test host (in a namespace this test creates) sees a connection only for the control,
 * and the gateway process keeps no descriptor it was handed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WorldGateway } from "../../agent/egress/gateway.ts";
import { prepareResolvConf } from "../../agent/egress/world.ts";
import { BUN, createBareWorld, createEgressFixture, run, spawnReady, type EgressFixture } from "../integration/_egress-fixture.ts";

const isRoot = process.getuid?.() === 0;
const ATTACKER = join(import.meta.dir, "_egress-handoff-attacker.ts");

describe.skipIf(!isRoot)("egress: a hijacked helper misusing the socket handoff", () => {
  let fx: EgressFixture;
  let dir: string;
  let world: Awaited<ReturnType<typeof createBareWorld>>;
  let other: Awaited<ReturnType<typeof createBareWorld>>;
  let gw: WorldGateway;
  let counter: Awaited<ReturnType<typeof spawnReady>>;
  const PORT = 7100;

  beforeAll(async () => {
    fx = await createEgressFixture();
    await fx.setZone({ "allowed.test": { A: [fx.net(20)] }, "other.test": { A: [fx.net(20)] } });
    // The counting echo server on the test host: one "conn" line per connection it accepts.
    counter = await spawnReady([
      "nsenter", `--net=/proc/${fx.hostsPid}/ns/net`, "--", BUN, "-e",
      `Bun.listen({hostname:"${fx.net(20)}",port:${PORT},socket:{open(){console.log("conn")},data(s,b){s.write(b)}}});console.log("ready")`,
    ]);
    dir = mkdtempSync(join(tmpdir(), "substrate-handoff-"));
    chmodSync(dir, 0o711);
    const resolv = prepareResolvConf(join(dir, "run"));
    world = await createBareWorld(resolv);
    other = await createBareWorld(resolv);
    gw = new WorldGateway({ worldId: "wld_handoff", dir: join(dir, "gw"), netnsPid: world.pid, // The address rule allows the test host's literal too: a believed "transparent" claim would get through.
      policy: { allowed: [`allowed.test:${PORT}`, `${fx.cidr}:${PORT}`] }, upstream: { host: fx.dnsIp, port: 53 } });
    await gw.listen();
    expect(gw.handoffAvailable).toBe(true);
  }, 60_000);
  afterAll(async () => {
    gw?.close();
    counter?.proc.kill("SIGKILL");
    await counter?.proc.exited;
    await world?.close();
    await other?.close();
    await fx?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const conns = () => counter.lines.filter((l) => l === "conn").length;
  const attack = async (where: { pid: number }, scenario: string, name = "allowed.test", port = PORT): Promise<Record<string, any>> => {
    const r = await run(["nsenter", `--net=/proc/${where.pid}/ns/net`, "--", BUN, ATTACKER, gw.socketPath, gw.fdSocketPath, gw.token, scenario, name, String(port)], { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`attacker ${scenario}: ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split("\n").pop()!);
  };
  const fds = () => readdirSync("/proc/self/fd").length;

  test("control: a genuine world socket accepted on the proxy port, an allowlisted name → spliced to the test host", async () => {
    const n = conns();
    const r = await attack(world, "control");
    expect(r.answer.ok).toBe(true);
    expect(r.echoed).toContain("ping");
    expect(conns()).toBe(n + 1);
    expect(gw.totals.handoffs).toBeGreaterThan(0);
  }, 60_000);

  test("the name is decided again: a genuine socket with a refused name reaches nothing", async () => {
    const n = conns();
    const r = await attack(world, "name-recheck", "other.test");
    expect(r.answer.ok).toBe(false);
    expect(r.answer.reason).toBe("not_allowed");
    expect(r.echoed).toBe("");
    await Bun.sleep(200);
    expect(conns()).toBe(n);
  }, 60_000);

  for (const [scenario, where, why] of [
    ["listening", "world", /listening/],
    ["wrong-port", "world", /not accepted on the helper's listeners/],
    ["unix", "world", /not an IPv4 socket/],
    ["two-fds", "world", /exactly one socket/],
    ["no-message", "world", /no socket waiting/],
    ["control", "other", /not a socket of this world's network namespace/],
  ] as const) {
    test(`refused: ${scenario}${where === "other" ? " (a socket of another network namespace)" : ""}; nothing reached, no descriptor kept`, async () => {
      const n = conns();
      const f0 = fds();
      const r = await attack(where === "world" ? world : other, scenario);
      expect(r.answer.ok).toBe(false);
      expect(r.answer.reason).toBe("bad_request");
      expect(String(r.answer.message)).toMatch(why);
      await Bun.sleep(200);
      expect(conns()).toBe(n);
      // The gateway closed whatever it was handed (the attacker's control connection is gone too).
      expect(fds()).toBeLessThanOrEqual(f0 + 1);
    }, 60_000);
  }

  test("a transparent claim is not believed: the destination is the socket's own SO_ORIGINAL_DST", async () => {
    const n = conns();
    const r = await attack(world, "transparent-claim", fx.net(20), PORT);
    expect(r.answer.ok).toBe(false);
    expect(r.echoed).toBe("");
    await Bun.sleep(200);
    expect(conns()).toBe(n);
  }, 60_000);
});
