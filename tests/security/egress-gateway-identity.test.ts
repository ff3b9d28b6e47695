/**
 * ATTACK (issue 15): a hijacked helper, or a process that found a gateway socket, lies about
 * who it is. The gateway decides by the world the socket belongs to: another world's token
 * is refused, a header claiming another world or another policy changes nothing, and a host
 * user other than the helper's cannot even open the socket (0700 directory). Inside a real
 * world: no gateway socket is visible at all, and the helper is not in the world's PID
 * namespace (nothing to signal or ptrace); it runs unprivileged, non-dumpable, no_new_privs.
 * Judged by effect: the upstream never sees a connection for a refused attempt.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WorldGateway } from "../../agent/egress/gateway.ts";
import { createEgressFixture, egressHelperPids, type EgressFixture } from "../integration/_egress-fixture.ts";
import { b64, pidsMentioning, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

const isRoot = process.getuid?.() === 0;

/** One raw gateway connection: header, then what the gateway answers (and echoes, if allowed). */
async function talk(sock: string, header: Record<string, unknown>, payload = ""): Promise<string> {
  let out = "";
  await new Promise<void>((resolve) => {
    void Bun.connect({
      unix: sock,
      socket: {
        open(s) {
          s.write(`${JSON.stringify(header)}\n${payload}`);
        },
        data(s, b) {
          out += Buffer.from(b).toString();
          if (out.includes("\n") && !out.startsWith('{"ok":true')) s.end();
          if (out.startsWith('{"ok":true') && out.includes(payload) && payload) s.end();
        },
        close() {
          resolve();
        },
        error() {
          resolve();
        },
      },
    }).catch(() => resolve());
    setTimeout(resolve, 5000);
  });
  return out;
}

describe.skipIf(!isRoot)("egress: the gateway decides by the socket", () => {
  let fx: EgressFixture;
  let dir: string;
  let a: WorldGateway;
  let b: WorldGateway;

  beforeAll(async () => {
    fx = await createEgressFixture();
    await fx.setZone({ "allowed.test": { A: [fx.net(10)] } });
    dir = mkdtempSync(join(tmpdir(), "substrate-gwid-"));
    chmodSync(dir, 0o711);
    const up = { host: fx.dnsIp, port: 53 };
    a = new WorldGateway({ worldId: "wld_a", dir: join(dir, "a"), owner: { uid: 65534, gid: 65534 }, policy: { allowed: ["allowed.test:7000", fx.cidr] }, upstream: up });
    b = new WorldGateway({ worldId: "wld_b", dir: join(dir, "b"), owner: { uid: 65534, gid: 65534 }, policy: { allowed: [] }, upstream: up });
    await a.listen();
    await b.listen();
  }, 60_000);
  afterAll(async () => {
    a?.close();
    b?.close();
    await fx?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const hdr = (token: string, extra: Record<string, unknown> = {}) => ({ v: 1, token, kind: "connect", via: "proxy", name: "allowed.test", port: 7000, ...extra });

  test("control: world A's socket + A's token reaches the allowlisted echo service", async () => {
    expect(await talk(a.socketPath, hdr(a.token), "ping\n")).toContain("ping");
  });

  test("B's socket with A's token: refused; B's socket claiming world A or A's policy: B's policy decides", async () => {
    expect(await talk(b.socketPath, hdr(a.token), "ping\n")).toContain('"reason":"bad_request"');
    const lie = await talk(b.socketPath, hdr(b.token, { world: "wld_a", world_id: "wld_a", policy: { allowed: ["*:*"] }, allowed: ["allowed.test:7000"] }), "ping\n");
    expect(lie).toContain('"ok":false');
    expect(lie).toContain('"reason":"not_allowed"');
    expect(lie).not.toContain("ping");
  });

  test("a host user other than the helper's cannot open a world's socket", () => {
    const r = Bun.spawnSync(["setpriv", "--reuid", "1000", "--regid", "1000", "--clear-groups", process.execPath, "-e", `require("net").connect(${JSON.stringify(a.socketPath)}).on("error",e=>{console.log(e.code);process.exit(0)}).on("connect",()=>{console.log("CONNECTED");process.exit(0)})`], { stdout: "pipe", stderr: "pipe" });
    expect(r.stdout.toString()).toMatch(/EACCES/);
  });
});

describe.skipIf(!isRoot)("egress: a real world cannot find the gateway or touch the helper", () => {
  let agent: TestAgent;
  let proj: string;
  beforeAll(async () => {
    agent = await startAgent();
    proj = tempProject();
  }, 60_000);
  afterAll(async () => {
    await agent?.stop();
    rmSync(proj, { recursive: true, force: true });
  });

  test("no gateway socket in the world; the helper is invisible, unprivileged, non-dumpable", async () => {
    const r = await agent.client.execute({
      cmd: "find / -xdev -name gw.sock 2>/dev/null; ls /proc | grep -c '^[0-9]' >/dev/null; for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q '__egres[s]' && echo HELPER-VISIBLE; done; true",
      cwd: proj,
      agent_id: "gwid",
      world: { project_dir: proj, allowed_domains: [] },
    });
    expect(b64(r.stdout_b64)).toBe("");
    const helper = egressHelperPids(r.world_id)[0];
    expect(helper).toBeDefined();
    const status = readFileSync(`/proc/${helper}/status`, "utf8");
    expect(status).toMatch(/^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
    expect(status).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(status).toMatch(/^CapEff:\s+0+$/m);
    // Its PID namespace is the host's, not the world's: a world process cannot address it.
    const spawnerNs = pidsMentioning(r.world_id).map((p) => readlinkSync(`/proc/${p}/ns/pid`));
    expect(new Set(spawnerNs).size).toBeGreaterThan(1);
    expect(readlinkSync(`/proc/${helper}/ns/pid`)).toBe(readlinkSync("/proc/self/ns/pid"));
    // Non-dumpable: its /proc files belong to root, not to its uid.
    expect(Bun.spawnSync(["stat", "-c", "%u", `/proc/${helper}/environ`], { stdout: "pipe" }).stdout.toString().trim()).toBe("0");
  }, 60_000);
});
