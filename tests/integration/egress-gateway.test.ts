/**
 * The egress gateway + in-world helper for real (root): a bare world netns with lo only, the
 * nft backstop, the helper (DNS stub, proxy, transparent listener) and the gateway in this
 * process, against a test upstream (DNS, HTTP, HTTPS with a test CA, SSH-like banner, echo)
 * in a netns the fixture creates. See agent/egress/.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setupWorldEgress, prepareResolvConf, type WorldEgress } from "../../agent/egress/world.ts";
import type { EgressEvent } from "../../src/contract/net.ts";
import { addrList } from "../../src/sys/ip.ts";
import { nft } from "../../src/sys/nft.ts";
import { BUN, createBareWorld, createEgressFixture, hostSnapshot, type EgressFixture } from "./_egress-fixture.ts";

const isRoot = process.getuid?.() === 0;
const MAIN = join(import.meta.dir, "../../agent/main.ts");
const PROXY = { HTTP_PROXY: "http://127.0.0.1:3128", HTTPS_PROXY: "http://127.0.0.1:3128", http_proxy: "http://127.0.0.1:3128", https_proxy: "http://127.0.0.1:3128" };

describe.skipIf(!isRoot)("egress gateway + helper in a bare world", () => {
  let fx: EgressFixture;
  let world: Awaited<ReturnType<typeof createBareWorld>>;
  let eg: WorldEgress;
  let stateDir: string;
  let before: Awaited<ReturnType<typeof hostSnapshot>>;
  const events: EgressEvent[] = [];
  let allowed: string[];

  beforeAll(async () => {
    before = await hostSnapshot();
    fx = await createEgressFixture();
    await fx.setZone({
      "allowed.test": { A: [fx.net(10)] },
      "a.wild.test": { A: [fx.net(11)] },
      "other.test": { A: [fx.net(20)] },
      "loop.test": { A: ["127.0.0.1"] },
      "meta.test": { A: ["169.254.169.254"] },
      "big.test": { A: [fx.net(30)] },
    });
    stateDir = mkdtempSync(join(tmpdir(), "substrate-egress-state-"));
    chmodSync(stateDir, 0o711);
    const resolv = prepareResolvConf(join(stateDir, "run"));
    world = await createBareWorld(resolv);
    allowed = ["allowed.test", "allowed.test:22", "allowed.test:7000", "allowed.test:8080", "*.wild.test", "loop.test", "meta.test", "big.test", fx.cidr];
    eg = await setupWorldEgress({
      worldId: "wld_egress-gw-test",
      nsPid: world.pid,
      stateDir,
      selfArgv: [BUN, MAIN],
      policy: { allowed, egress: { policy_id: "test" } },
      upstream: { host: fx.dnsIp, port: 53 },
      onEvent: (e) => events.push(e),
      log: () => {},
    });
  }, 60_000);

  afterAll(async () => {
    await eg?.close();
    await world?.close();
    await fx?.close();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });

  const sh = (cmd: string, env: Record<string, string> = {}) => world.inWorld(["sh", "-c", cmd], { env });

  test("the world has lo only, the synthetic address, and the backstop table", async () => {
    const addrs = await addrList({ netnsPid: world.pid });
    expect(addrs.map((a) => a.ifname)).toEqual(["lo"]);
    expect(addrs[0]!.addr_info.map((i) => i.local)).toContain("198.18.0.1");
    const t = await nft(["list", "table", "inet", "substrate"], { netnsPid: world.pid });
    expect(t).toContain("redirect to :15001");
    expect(t).toContain("policy drop");
  });

  test("DNS: allowlisted → synthetic address; others NXDOMAIN + a deny event; AAAA NODATA", async () => {
    const a = await sh("getent ahostsv4 allowed.test");
    expect(a.code).toBe(0);
    expect(a.stdout).toMatch(/^198\.1[89]\.\d+\.\d+\s+STREAM allowed\.test/m);
    const again = await sh("getent ahostsv4 allowed.test");
    expect(again.stdout.split(/\s/)[0]).toBe(a.stdout.split(/\s/)[0]); // stable for the world's life
    const n = await sh("getent ahostsv4 other.test");
    expect(n.code).toBe(2);
    expect(events.some((e) => e.via === "dns" && e.name === "other.test" && e.decision === "deny" && e.reason === "not_allowed")).toBe(true);
    const six = await sh("getent ahostsv6 allowed.test");
    expect(six.stdout.trim()).toBe("");
    // DNS over TCP to the stub answers the same (a length-prefixed query through bash's /dev/tcp).
    const tcp = await world.inWorld(["bash", "-c", `exec 3<>/dev/tcp/127.0.0.53/53; printf '\\x00\\x1e\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x07allowed\\x04test\\x00\\x00\\x01\\x00\\x01' >&3; timeout 3 head -c 60 <&3 | od -An -tu1 | tr -s ' \\n' ' '`]);
    expect(tcp.stdout.trim().split(" ").slice(-4).join(".")).toBe(a.stdout.split(/\s/)[0]);
  });

  test("curl with and without proxy env reaches an allowlisted name (HTTP and HTTPS with the test CA)", async () => {
    expect((await sh("curl -sS --max-time 10 http://allowed.test/", PROXY)).stdout).toBe("ok 80\n");
    expect((await sh("curl -sS --max-time 10 http://allowed.test/")).stdout).toBe("ok 80\n");
    expect((await sh(`curl -sS --max-time 10 --cacert ${fx.caFile} https://allowed.test/`, PROXY)).stdout).toBe("ok 443 tls\n");
    expect((await sh(`curl -sS --max-time 10 --cacert ${fx.caFile} https://a.wild.test/`)).stdout).toBe("ok 443 tls\n");
    const allow = events.filter((e) => e.decision === "allow" && e.name === "allowed.test");
    expect(allow.length).toBeGreaterThan(0);
    expect(allow.every((e) => e.bytes_down > 0 && e.bytes_up > 0)).toBe(true);
  });

  test("Node fetch, Python urllib, git clone over http, a raw TCP client, an SSH banner", async () => {
    const node = await sh(`node -e 'fetch("http://allowed.test:8080/").then(r=>r.text()).then(t=>process.stdout.write(t))'`);
    expect(node.stdout).toBe("ok 8080\n");
    const py = await sh(`python3 -c 'import urllib.request,sys; sys.stdout.write(urllib.request.urlopen("http://allowed.test/").read().decode())'`, PROXY);
    expect(py.stdout).toBe("ok 80\n");
    const dest = join(stateDir, "clone");
    const git = await sh(`git clone -q http://allowed.test/static/repo.git ${dest} && cat ${dest}/f`, PROXY);
    expect(git.stdout).toBe("hello\n");
    const raw = await sh(`printf 'ping\\n' | timeout 20 ${BUN} -e 'const s=require("net").connect(7000,"allowed.test");process.stdin.pipe(s);s.on("data",d=>{process.stdout.write(d);s.end()})'`);
    expect(raw.stdout).toBe("ping\n");
    const ssh = await sh(`timeout 20 ${BUN} -e 'const s=require("net").connect(22,"allowed.test");s.on("data",d=>{process.stdout.write(d);s.end()})'`);
    expect(ssh.stdout).toContain("SSH-2.0-OpenSSH_9.9 substrate-test");
  }, 60_000);

  test("one relay: every path hands the world's socket to the gateway (transparent, CONNECT, plain HTTP proxy, SOCKS)", async () => {
    const n0 = eg.gateway.totals.handoffs;
    expect((await sh("curl -sS --max-time 10 http://allowed.test/")).stdout).toBe("ok 80\n");
    expect(eg.gateway.totals.handoffs).toBe(n0 + 1);
    expect((await sh(`curl -sS --max-time 10 --cacert ${fx.caFile} https://allowed.test/`, PROXY)).stdout).toBe("ok 443 tls\n");
    expect(eg.gateway.totals.handoffs).toBe(n0 + 2);
    expect((await sh("curl -sS --max-time 10 http://allowed.test:8080/", PROXY)).stdout).toBe("ok 8080\n");
    expect(eg.gateway.totals.handoffs).toBe(n0 + 3);
    expect((await sh("curl -sS --max-time 10 --socks5-hostname 127.0.0.1:3128 http://allowed.test/")).stdout).toBe("ok 80\n");
    expect(eg.gateway.totals.handoffs).toBe(n0 + 4);
    // No egress budget in this policy: the kernel relays them (splice(2), kernel-relay.ts).
    expect(eg.gateway.totals.kernel).toBeGreaterThanOrEqual(4);
    // A denial is not handed over (the helper answers it on its own copy).
    expect((await sh("curl -sS --max-time 10 -i http://other.test/", PROXY)).stdout).toContain("403");
    expect(eg.gateway.totals.handoffs).toBe(n0 + 4);
    // Bytes counted by the gateway for a handed-over download: exact payload both ways.
    const before = events.length;
    expect((await sh(`curl -sS --max-time 20 -o /dev/null -w '%{size_download}' http://big.test/bytes/${3 * 1024 * 1024}`)).stdout).toBe(String(3 * 1024 * 1024));
    for (let i = 0; i < 100 && !events.slice(before).some((e) => e.name === "big.test" && e.decision === "allow"); i++) await Bun.sleep(20);
    const big = events.slice(before).find((e) => e.name === "big.test" && e.decision === "allow")!;
    expect(big.bytes_down).toBeGreaterThan(3 * 1024 * 1024);
    expect(big.bytes_down).toBeLessThan(3 * 1024 * 1024 + 4096);
    expect(big.bytes_up).toBeGreaterThan(0);
    // The helper keeps no copy of a handed-over connection: its fds stay few.
    const fds = Bun.spawnSync(["ls", `/proc/${eg.helperPid}/fd`], { stdout: "pipe" }).stdout.toString().trim().split("\n").length;
    expect(fds).toBeLessThan(40);
  }, 60_000);

  test("a non-listed name through the proxy: 403 with a machine-readable line; SOCKS refused", async () => {
    const r = await sh("curl -sS --max-time 10 -i http://other.test/", PROXY);
    expect(r.stdout).toContain("HTTP/1.1 403 Forbidden");
    expect(r.stdout).toContain('SUBSTRATE_EGRESS_DECISION {"decision":"deny","reason":"not_allowed","host":"other.test","port":80}');
    expect(r.stdout).toContain("other.test:80 is not in net.allowed of policy test");
    const c = await sh("curl -sS --max-time 10 https://other.test/", PROXY);
    expect(c.code).not.toBe(0);
    expect(c.stderr).toMatch(/403/);
    const s = await sh("curl -sS --max-time 10 --socks5-hostname 127.0.0.1:3128 http://other.test/");
    expect(s.code).toBe(97);
    expect((await sh("curl -sS --max-time 10 --socks5-hostname 127.0.0.1:3128 http://allowed.test/")).stdout).toBe("ok 80\n");
  });

  test("a port not allowed for the name is reset (transparent) and an SSH client gets the policy text", async () => {
    const r = await sh(`curl -sS --max-time 10 http://allowed.test:8081/`);
    expect(r.stderr).toMatch(/reset by peer|Recv failure|Empty reply/); // a reset: fails at once, no hang
    expect(r.code).not.toBe(0);
    const ssh = await sh(`timeout 20 ${BUN} -e 'const s=require("net").connect(22,"a.wild.test");s.on("data",d=>process.stdout.write(d));s.on("end",()=>s.end())'`);
    expect(ssh.stdout).toContain("SSH-2.0-substrate_policy");
    expect(ssh.stdout).toContain("a.wild.test:22 is not in net.allowed");
  });

  test("IP literals: allowed only when an address rule covers them; 127.0.0.1 / metadata answers refused", async () => {
    expect((await sh(`curl -sS --max-time 10 http://${fx.net(10)}/`)).stdout).toBe("ok 80\n"); // fx.cidr names it
    const lit = await sh("curl -sS --max-time 10 http://192.0.2.55/"); // port 80: answered with a 403
    expect(lit.stdout).toContain("SUBSTRATE_EGRESS_DECISION");
    expect((await sh("curl -sS --max-time 10 http://192.0.2.55:9999/")).code).toBe(56); // other ports: reset
    expect(events.some((e) => e.name === "192.0.2.55" && e.decision === "deny" && e.reason === "not_allowed")).toBe(true);
    const loop = await sh("curl -sS --max-time 10 -i http://loop.test/", PROXY);
    expect(loop.stdout).toContain("403");
    expect(loop.stdout).toContain("address_denied");
    const meta = await sh("curl -sS --max-time 10 http://meta.test/");
    expect(meta.stdout).toContain('"reason":"address_denied"');
    expect(events.some((e) => e.name === "meta.test" && e.reason === "address_denied")).toBe(true);
  });

  test("IPv6 and UDP are refused at once", async () => {
    const v6 = await sh("curl -sS --max-time 5 http://[2001:db8::1]/");
    expect(v6.code).toBe(7);
    const udp = await sh(`${BUN} -e 'const s=require("dgram").createSocket("udp4");s.on("error",e=>{console.log("err",e.code);process.exit(0)});s.send("x",53,"${fx.dnsIp}",e=>{console.log(e?"senderr "+e.code:"sent");setTimeout(()=>process.exit(0),300)})'`);
    expect(udp.stdout).toMatch(/err|senderr/);
    // The stub is the only resolver: a query aimed at the upstream itself never arrives, and
    // the stub forwards nothing for a name that is not allowlisted.
    const direct = await sh(`${BUN} ${join(import.meta.dir, "_dns-query.ts")} ${fx.dnsIp} exfil-direct.test A`);
    expect(direct.stdout).not.toContain('"rcode":0');
    expect((await sh("getent hosts exfil-stub.test")).code).toBe(2);
    await Bun.sleep(200);
    expect(fx.dnsLog.some((l) => l.includes("exfil-"))).toBe(false);
  });

  test("an allowlist change applies to the next connection and the next DNS answer", async () => {
    expect((await sh("getent ahostsv4 other.test")).code).toBe(2);
    eg.setPolicy({ allowed: [...allowed, "other.test"], egress: { policy_id: "test" } });
    expect((await sh("curl -sS --max-time 10 http://other.test/")).stdout).toBe("ok 80\n");
    eg.setPolicy({ allowed, egress: { policy_id: "test" } });
    const r = await sh("curl -sS --max-time 10 -i http://other.test/", PROXY);
    expect(r.stdout).toContain("403");
  });

  test("a 10 MiB budget: the 11th MiB is refused, and the next connection too", async () => {
    eg.setPolicy({ allowed, egress: { policy_id: "test", total_bytes: 10 * 1024 * 1024 } });
    const cmd = eg.command(undefined);
    const ok = await sh(`curl -sS --max-time 20 -o /dev/null -w '%{size_download}' http://big.test/bytes/${9 * 1024 * 1024}`);
    expect(ok.stdout).toBe(String(9 * 1024 * 1024));
    const over = await sh(`curl -sS --max-time 20 -o /dev/null -w '%{size_download}' http://big.test/bytes/${2 * 1024 * 1024}`);
    expect(over.code).not.toBe(0);
    expect(Number(over.stdout)).toBeLessThan(2 * 1024 * 1024);
    const next = await sh("curl -sS --max-time 10 -i http://big.test/", PROXY);
    expect(next.stdout).toContain("403");
    const sum = eg.endCommand(cmd);
    expect(sum.bytes_down).toBeGreaterThan(10 * 1024 * 1024 - 1);
    expect(sum.bytes_down).toBeLessThan(12 * 1024 * 1024);
    expect(sum.blocked.some((b) => b.reason === "budget")).toBe(true);
    eg.setPolicy({ allowed, egress: { policy_id: "test" } });
  }, 60_000);

  test("close leaves nothing: helper gone, socket dir gone, host ruleset and sysctls byte-identical", async () => {
    const pid = eg.helperPid;
    const sock = eg.gateway.socketPath;
    // A slow reader's download is open in the kernel relay (back-pressure: the pipes fill and
    // the relay waits); closing the world's gateway cuts it.
    const size = 64 * 1024 * 1024;
    const bg = world.inWorld(["curl", "-sS", "--limit-rate", "2M", "-o", "/dev/null", "-w", "%{size_download}", `http://big.test/bytes/${size}`], { timeoutMs: 60_000 });
    for (let i = 0; i < 500 && eg.gateway.kernelBytes() === 0; i++) await Bun.sleep(20);
    expect(eg.gateway.kernelBytes()).toBeGreaterThan(0);
    await Bun.sleep(300);
    expect(eg.gateway.kernelBytes()).toBeLessThan(size / 2);
    await eg.close();
    const cut = await bg;
    expect(cut.code).not.toBe(0);
    expect(Number(cut.stdout)).toBeLessThan(size);
    expect(existsSync(`/proc/${pid}`)).toBe(false);
    expect(existsSync(sock)).toBe(false);
    await world.close();
    await fx.close();
    const after = await hostSnapshot();
    expect(after.ruleset).toBe(before.ruleset);
    expect(after.sysctls).toBe(before.sysctls);
    // Links: only ours (other people's tests add and remove theirs meanwhile).
    expect(after.links.filter((l) => l.startsWith("sbt") && !before.links.includes(l))).toEqual([]);
    writeFileSync(join(stateDir, "done"), "");
  });
});

describe.skipIf(!isRoot)("egress: the helper's relay fallback (no socket handoff)", () => {
  let fx: EgressFixture;
  let world: Awaited<ReturnType<typeof createBareWorld>>;
  let eg: WorldEgress;
  let stateDir: string;

  beforeAll(async () => {
    fx = await createEgressFixture();
    await fx.setZone({ "allowed.test": { A: [fx.net(10)] }, "other.test": { A: [fx.net(20)] } });
    stateDir = mkdtempSync(join(tmpdir(), "substrate-egress-relay-"));
    chmodSync(stateDir, 0o711);
    world = await createBareWorld(prepareResolvConf(join(stateDir, "run")));
    eg = await setupWorldEgress({
      worldId: "wld_egress-relay-test",
      nsPid: world.pid,
      stateDir,
      selfArgv: [BUN, MAIN],
      policy: { allowed: ["allowed.test", "allowed.test:7000", fx.cidr], egress: { policy_id: "test" } },
      upstream: { host: fx.dnsIp, port: 53 },
      log: () => {},
      handoff: false,
    });
  }, 60_000);
  afterAll(async () => {
    await eg?.close();
    await world?.close();
    await fx?.close();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });

  test("transparent, CONNECT, plain proxy, SOCKS and a raw echo work through the helper's own relay; denials as before", async () => {
    const sh = (cmd: string, env: Record<string, string> = {}) => world.inWorld(["sh", "-c", cmd], { env });
    expect(eg.gateway.handoffAvailable).toBe(false);
    expect((await sh("curl -sS --max-time 10 http://allowed.test/")).stdout).toBe("ok 80\n");
    expect((await sh(`curl -sS --max-time 10 --cacert ${fx.caFile} https://allowed.test/`, PROXY)).stdout).toBe("ok 443 tls\n");
    expect((await sh("curl -sS --max-time 10 http://allowed.test/", PROXY)).stdout).toBe("ok 80\n");
    expect((await sh("curl -sS --max-time 10 --socks5-hostname 127.0.0.1:3128 http://allowed.test/")).stdout).toBe("ok 80\n");
    const raw = await sh(`printf 'ping\\n' | timeout 20 ${BUN} -e 'const s=require("net").connect(7000,"allowed.test");process.stdin.pipe(s);s.on("data",d=>{process.stdout.write(d);s.end()})'`);
    expect(raw.stdout).toBe("ping\n");
    expect((await sh("curl -sS --max-time 10 -i http://other.test/", PROXY)).stdout).toContain("403");
    expect(eg.gateway.totals.handoffs).toBe(0);
    expect(eg.gateway.totals.connections).toBeGreaterThanOrEqual(5);
  }, 60_000);
});
