/**
 * Issue 15: the Lima guest gets egress with no extra provisioning. The guest is the harness's
 * real systemd guest (tests/e2e/harness: Debian 12, systemd as PID 1 in systemd-nspawn with
 * a private network). The agent is installed the product's way (`substrate world warm`, the
 * socket-activated unit); nothing egress-specific is set up in the guest. The guest's network
 * stands in for Lima's: a link from the guest's network namespace to a test host in a
 * namespace this test creates (tests/integration/_egress-fixture.ts: DNS, HTTP, an echo
 * service), a route to the test range only (no default route), and the guest's resolv.conf
 * pointing at the test DNS (what Lima's host resolver is for a real VM). A world in the guest
 * reaches an allowlisted name through the guest agent's gateway; a non-listed name is denied
 * (NXDOMAIN / 403) and comes back in the execute's blocked list. The world's processes have no
 * route to the test host themselves. Traffic goes only to the test host.
 *
 * Needs root (nspawn); builds dist/ with `scripts/build.ts --native` when its inputs changed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { createGuest, destroyGuest, ensureGuestImage, LINUX_BOX_ENV, type Guest } from "./harness/harness.ts";
import { createEgressFixture, type EgressFixture } from "../integration/_egress-fixture.ts";
import { ipBatch } from "../../src/sys/ip.ts";

const ROOT = resolve(import.meta.dir, "../..");
const HOST_BIN = join(ROOT, "dist", `substrate-linux-${process.arch === "arm64" ? "arm64" : "x64"}`);
const T = 180_000;
const isRoot = process.getuid?.() === 0;

let g: Guest;
let fx: EgressFixture;
const must = (...args: string[]): string => {
  const r = g.limactl(["shell", g.name, ...args]);
  if (r.code !== 0) throw new Error(`${args.join(" ")} → exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
};

describe.skipIf(!isRoot)("egress from a world inside the Lima guest (harness guest, no extra provisioning)", () => {
  const PROJECT = "/home/lima.linux/egress-proj";
  let allowed: string[];

  beforeAll(async () => {
    const b = Bun.spawnSync([process.execPath, join(ROOT, "scripts/build.ts"), "--native"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    if (b.exitCode !== 0) throw new Error(`build failed: ${b.stderr.toString()}`);
    ensureGuestImage();
    fx = await createEgressFixture();
    await fx.setZone({ "allowed.test": { A: [fx.net(10)] }, "other.test": { A: [fx.net(20)] } });
    g = createGuest(`egg${process.pid}`, { env: { ...LINUX_BOX_ENV } });
    const c = g.limactl(["copy", HOST_BIN, `${g.name}:substrate`]);
    if (c.code !== 0) throw new Error(`limactl copy: ${c.stderr}`);
    must("sudo", "install", "-m", "0755", "substrate", "/usr/local/bin/substrate");
    // The product's install: units, socket activation; nothing about egress.
    const w = JSON.parse(must("sudo", "substrate", "world", "warm", "--json"));
    expect(w.ok).toBe(true);

    // The guest's network (Lima's part for a real VM): a link to the test host, a route to the
    // test range, the test DNS as the guest's resolver.
    const guestPid = Number(JSON.parse(readFileSync(join(g.dir, "emu.json"), "utf8")).guest.pid);
    const link = `sbg${Math.floor(Math.random() * 0xffffff).toString(16).padStart(6, "0")}`;
    await ipBatch([`link add ${link} netns ${fx.hostsPid} type veth peer name eth1 netns ${guestPid}`]);
    await ipBatch([`addr add 10.250.${fx.k}.1/30 dev ${link}`, `link set ${link} up`], { netnsPid: fx.hostsPid });
    await ipBatch([`addr add 10.250.${fx.k}.2/30 dev eth1`, "link set eth1 up", `route add ${fx.cidr} via 10.250.${fx.k}.1`], { netnsPid: guestPid });
    must("sudo", "sh", "-c", `rm -f /etc/resolv.conf; echo 'nameserver ${fx.dnsIp}' > /etc/resolv.conf`);
    // The guest itself reaches the test host (the VM's network works) …
    expect(must("curl", "-sS", "--max-time", "10", `http://${fx.net(10)}/`)).toBe("ok 80\n");
    must("mkdir", "-p", PROJECT);
    allowed = ["allowed.test", fx.cidr];
  }, 600_000);

  afterAll(async () => {
    const left = g ? destroyGuest(g) : [];
    await fx?.close(); // the link goes with the test host's namespace
    if (left.length) throw new Error(`guest left things behind: ${left.join("; ")}`);
  }, 120_000);

  /** One execute through the guest's agent socket, as the guest user. */
  const execute = (cmd: string): { exit: number; stdout: string; world_id: string; egress?: { blocked: Array<{ name: string; port: number; reason: string; message: string }>; bytes_down: number } } => {
    const body = JSON.stringify({ cmd, cwd: PROJECT, agent_id: "e2e-egress", world: { project_dir: PROJECT, allowed_domains: allowed, egress: { policy_id: "e2e" } } });
    const out = must("curl", "-sS", "--max-time", "120", "--unix-socket", "/run/substrate.sock", "-H", "content-type: application/json", "-d", body, "http://localhost/v1/execute");
    const r = JSON.parse(out);
    if (typeof r.exit !== "number") throw new Error(`execute failed: ${out}`);
    return { ...r, stdout: Buffer.from(r.stdout_b64, "base64").toString() };
  };

  test("an allowlisted name is reached from a world in the guest, with and without the proxy env", () => {
    const r = execute("getent ahostsv4 allowed.test | head -1; curl -sS --max-time 10 http://allowed.test/; curl -sS --max-time 10 --noproxy '*' http://allowed.test:80/; echo rc=$?");
    expect(r.stdout).toMatch(/^198\.1[89]\.\d+\.\d+\s+STREAM allowed\.test/m); // the world's stub: a synthetic address
    expect(r.stdout).toContain("ok 80\nok 80\nrc=0");
    expect(r.egress?.bytes_down).toBeGreaterThan(0);
  }, T);

  test("a non-listed name is denied (NXDOMAIN, 403 through the proxy) and reported; the world has no route of its own", () => {
    const r = execute(
      [
        "getent hosts other.test; echo dns=$?",
        "curl -sS --max-time 10 http://other.test/ | head -1",
        // The test host's address is allowlisted by the address rule, yet only through the
        // gateway: the world's own netns has lo only.
        "ip -o -4 addr show | grep -v ' lo ' | wc -l",
        "ip route show table main | wc -l",
      ].join("; "),
    );
    expect(r.stdout).toContain("dns=2");
    expect(r.stdout).toContain("SUBSTRATE_EGRESS_DECISION");
    expect(r.stdout).toMatch(/\n0\n0\n$/);
    expect(r.egress?.blocked.some((b) => b.name === "other.test" && b.reason === "not_allowed")).toBe(true);
  }, T);
});
