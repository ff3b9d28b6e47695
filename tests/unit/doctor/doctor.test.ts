/**
 * Host and world doctor composition on scripted systems: golden JSON per platform variant,
 * exit codes, text prefixes, the disabled short-circuit. (The real machine: tests/integration.)
 * Regenerate goldens with UPDATE_GOLDEN=1 after an intended change, and review the diff.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { WorldDoctorEnvelopeV1 } from "../../../src/contract/index.ts";
import { runHostDoctor } from "../../../src/doctor/host.ts";
import { FIX_PREFIX, HOST_HEADER, HOST_SECTION, WORLD_HEADER, WORLD_SECTION } from "../../../src/doctor/render.ts";
import { runWorldDoctor } from "../../../src/doctor/world.ts";
import { fakeSystem, GUEST_KEY, guestProbeOut, linuxHealthy, macHealthy, MOUNTINFO_HYBRID, MOUNTINFO_V1, settings, WORLD_REPORT_OK } from "./_fake.ts";

const GOLDEN = join(import.meta.dir, "golden");
function golden(name: string, value: unknown): void {
  const file = join(GOLDEN, `${name}.json`);
  const text = `${JSON.stringify(value, null, 2)}\n`;
  if (process.env.UPDATE_GOLDEN || !existsSync(file)) writeFileSync(file, text);
  expect(text).toBe(readFileSync(file, "utf8"));
}

/** Every non-header line carries one of the four prefixes; every WARN/FAIL is followed by a fix. */
function checkText(text: string, header: string): void {
  const lines = text.trimEnd().split("\n");
  expect(lines[0]).toBe(header);
  lines.forEach((l, i) => {
    if (l.startsWith("== ")) return;
    expect(l).toMatch(/^(PASS|WARN|FAIL|INFO) {2}\| \S/);
    if (/^(WARN|FAIL)/.test(l)) {
      expect(lines[i + 1]?.startsWith(FIX_PREFIX)).toBe(true);
      expect(lines[i + 1]!.length).toBeGreaterThan(FIX_PREFIX.length + 3);
    }
  });
}

describe("host doctor: linux", () => {
  test("healthy, socket-activated: golden JSON, exit 0", async () => {
    const r = await runHostDoctor(fakeSystem(linuxHealthy()), settings());
    golden("linux-host-healthy", r.envelope);
    expect(r.exitCode).toBe(0);
    expect(r.envelope.host.platform === "linux" && r.envelope.host.world_socket.mode).toBe("socket_activation");
    checkText(r.text, HOST_HEADER);
    expect(r.text).not.toContain("FAIL");
  });

  test("no systemd, no agent: manual mode, systemd_error, exit 4, fix printed", async () => {
    const spec = linuxHealthy({ dirs: ["/dev/fuse"], sockets: [], bins: ["fuse-overlayfs", "nft"] });
    const sys = fakeSystem(spec);
    const r = await runHostDoctor(sys, settings());
    golden("linux-host-no-agent", r.envelope);
    expect(r.exitCode).toBe(4);
    expect(sys.ran).toEqual([]); // no systemctl on a non-systemd host
    checkText(r.text, HOST_HEADER);
    expect(r.text).toContain("FAIL  | agent socket: no listener at /run/substrate.sock\nINFO  | fix: substrate world warm");
  });

  test("the configured socket path (SUBSTRATE_WORLD_SOCKET / world.socket) moves the probe", async () => {
    const sys = fakeSystem(linuxHealthy());
    const r = await runHostDoctor(sys, settings({ socket_path: "/tmp/x.sock" }));
    expect(r.envelope.host.platform === "linux" && r.envelope.host.world_socket.socket_path).toBe("/tmp/x.sock");
    expect(r.exitCode).toBe(4);
  });

  test("each missing prerequisite: ok=false, exit 4, FAIL + fix", async () => {
    const cases: [string, Parameters<typeof linuxHealthy>[0], string][] = [
      ["nft", { bins: ["fuse-overlayfs", "systemctl"] }, "sudo apt-get install -y nftables"],
      ["cgroup", { files: { ...linuxHealthy().files, "/proc/self/mountinfo": MOUNTINFO_V1 } }, "cgroup2"],
      ["overlay+fuse", { files: { ...linuxHealthy().files, "/proc/filesystems": "nodev\tsysfs\n" }, dirs: ["/run/systemd/system"] }, "sudo modprobe overlay"],
    ];
    for (const [name, over, fix] of cases) {
      const r = await runHostDoctor(fakeSystem(linuxHealthy(over)), settings());
      expect(r.envelope.ok, name).toBe(false);
      expect(r.exitCode, name).toBe(4);
      expect(r.text, name).toContain(fix);
      checkText(r.text, HOST_HEADER);
    }
  });

  test("hybrid cgroups count as cgroup v2 mounted, with a WARN and its fix", async () => {
    const r = await runHostDoctor(fakeSystem(linuxHealthy({ files: { ...linuxHealthy().files, "/proc/self/mountinfo": MOUNTINFO_HYBRID } })), settings());
    expect(r.envelope.host.platform === "linux" && r.envelope.host.cgroup_v2).toBe(true);
    expect(r.exitCode).toBe(0);
    expect(r.text).toContain("WARN  | cgroup v2: hybrid layout");
  });

  test("world disabled: ok=false and exit 4 even on a healthy host", async () => {
    const r = await runHostDoctor(fakeSystem(linuxHealthy()), settings({ world_enabled: false, enabled_source: "SUBSTRATE_WORLD=disabled" }));
    expect(r.envelope.world_enabled).toBe(false);
    expect(r.envelope.ok).toBe(false);
    expect(r.exitCode).toBe(4);
    expect(r.text).toContain("WARN  | world isolation: disabled by SUBSTRATE_WORLD=disabled\nINFO  | fix: unset SUBSTRATE_WORLD");
  });

  test("a capabilities answer that breaks the contract fails the probe", async () => {
    const spec = linuxHealthy();
    spec.http!["/run/substrate.sock /v1/capabilities"] = { status: 200, body: '{"api_version":"v0"}' };
    const r = await runHostDoctor(fakeSystem(spec), settings());
    expect(r.exitCode).toBe(4);
    const ws = r.envelope.host.platform === "linux" ? r.envelope.host.world_socket : null;
    expect(ws?.probe_ok).toBe(false);
    expect(ws?.probe_error).toContain("breaks the contract");
  });

  test("permission denied on the socket suggests the substrate group", async () => {
    const spec = linuxHealthy();
    spec.http!["/run/substrate.sock /v1/capabilities"] = { status: null, error: "EACCES: permission denied" };
    const r = await runHostDoctor(fakeSystem(spec), settings());
    expect(r.text).toContain('INFO  | fix: sudo usermod -aG substrate "$USER"');
  });
});

describe("host doctor: macos (injected platform + runner)", () => {
  test("healthy: golden JSON, exit 0, only read-only commands", async () => {
    const sys = fakeSystem(macHealthy());
    const r = await runHostDoctor(sys, settings());
    golden("macos-host-healthy", r.envelope);
    expect(r.exitCode).toBe(0);
    checkText(r.text, HOST_HEADER);
    expect(sys.ran.some((c) => /limactl (start|stop|create|delete|copy)/.test(c))).toBe(false);
    expect(r.text).toContain("INFO  | guest disk /: 4% used (90 GiB free)\nINFO  | guest nft: /usr/sbin/nft");
  });

  test("limactl missing: dependency unavailable, exit 3, brew fix", async () => {
    const sys = fakeSystem(macHealthy({ bins: [] }));
    const r = await runHostDoctor(sys, settings());
    golden("macos-host-no-limactl", r.envelope);
    expect(r.exitCode).toBe(3);
    expect(r.text).toContain("FAIL  | lima: limactl not found on PATH\nINFO  | fix: brew install lima");
    expect(sys.ran.filter((c) => c.startsWith("limactl"))).toEqual([]);
  });

  test("VM stopped: reported, never started; exit 4", async () => {
    const spec = macHealthy();
    spec.commands!["limactl list substrate --json"] = { stdout: `${JSON.stringify({ name: "substrate", status: "Stopped" })}\n` };
    const sys = fakeSystem(spec);
    const r = await runHostDoctor(sys, settings());
    expect(r.envelope.host.platform === "macos" && r.envelope.host.lima.vm_status).toBe("Stopped");
    expect(r.exitCode).toBe(4);
    expect(sys.ran.some((c) => c.startsWith("limactl shell"))).toBe(false);
    expect(r.text).toContain("INFO  | fix: substrate world warm");
  });

  test("no instance: NotFound", async () => {
    const spec = macHealthy();
    spec.commands!["limactl list substrate --json"] = { code: 1, stderr: 'level=warning msg="No instance matching substrate found."' };
    const r = await runHostDoctor(fakeSystem(spec), settings());
    expect(r.envelope.host.platform === "macos" && r.envelope.host.lima.vm_status).toBe("NotFound");
  });

  test("socket-activated guest with an idle service still counts as active", async () => {
    const spec = macHealthy();
    spec.commands![GUEST_KEY] = { stdout: guestProbeOut({ units: "active\ninactive" }) };
    const r = await runHostDoctor(fakeSystem(spec), settings());
    expect(r.envelope.host.platform === "macos" && r.envelope.host.lima.service_active).toBe(true);
  });

  test("a warm/rebuild in progress: guest not probed, FAIL with the pid, exit 4", async () => {
    const sys = fakeSystem(macHealthy({ rebuild: { phase: "provisioning", pid: 4242 } }));
    const r = await runHostDoctor(sys, settings());
    expect(r.exitCode).toBe(4);
    expect(sys.ran.some((c) => c.startsWith("limactl shell"))).toBe(false);
    expect(r.text).toContain("FAIL  | guest: a rebuild is in progress (phase provisioning, substrate pid 4242)");
  });

  test("guest checks cost one limactl shell; socket permission denied suggests the group fix", async () => {
    const spec = macHealthy();
    spec.commands![GUEST_KEY] = {
      stdout: guestProbeOut({ caps: "curl: (7) Failed to connect to localhost port 80: Permission denied\n000" }),
    };
    const sys = fakeSystem(spec);
    const r = await runHostDoctor(sys, settings());
    expect(sys.ran.filter((c) => c.startsWith("limactl shell"))).toHaveLength(1);
    expect(r.envelope.host.platform === "macos" && r.envelope.host.lima.agent_caps_ok).toBe(false);
    expect(r.text).toContain("FAIL  | guest: GET /v1/capabilities on /run/substrate.sock failed: curl: (7) Failed to connect");
    expect(r.text).toContain("INFO  | fix: substrate world warm   # makes the Lima user the socket's owner");
    expect(r.exitCode).toBe(4);
  });

  test("limactl shell itself failing (ssh) fails service and caps with its stderr", async () => {
    const spec = macHealthy();
    spec.commands![GUEST_KEY] = { code: 255, stdout: "", stderr: "ssh: connect to host 127.0.0.1 port 60022: Connection refused\n" };
    const r = await runHostDoctor(fakeSystem(spec), settings());
    expect(r.envelope.host).toMatchObject({ lima: { service_active: false, agent_caps_ok: false } });
    expect(r.text).toContain("failed: ssh: connect to host 127.0.0.1 port 60022: Connection refused");
  });

  test("vsock-proxy missing is a WARN, not a failure", async () => {
    const r = await runHostDoctor(fakeSystem(macHealthy({ bins: ["limactl"] })), settings());
    expect(r.exitCode).toBe(0);
    expect(r.text).toContain("WARN  | vsock-proxy: not found");
  });
});

describe("host doctor: windows", () => {
  test("explicitly unsupported: golden JSON, exit 4", async () => {
    const r = await runHostDoctor(fakeSystem({ platform: "windows" }), settings());
    golden("windows-host", r.envelope);
    expect(r.envelope.host).toMatchObject({ ok: false, status: "unsupported" });
    expect(r.exitCode).toBe(4);
    checkText(r.text, HOST_HEADER);
  });
});

describe("world doctor", () => {
  test("linux healthy: host + agent report, golden JSON, exit 0, sections", async () => {
    const r = await runWorldDoctor(fakeSystem(linuxHealthy()), settings());
    golden("linux-world-healthy", r.envelope);
    expect(WorldDoctorEnvelopeV1.parse(r.envelope).ok).toBe(true);
    expect(r.exitCode).toBe(0);
    checkText(r.text, WORLD_HEADER);
    const lines = r.text.split("\n");
    expect(lines[1]).toBe(HOST_SECTION);
    expect(lines.indexOf(WORLD_SECTION)).toBeGreaterThan(1);
    expect(r.text).toContain("PASS  | landlock: supported (abi 3)");
  });

  test("macos healthy through the guest: golden JSON, exit 0", async () => {
    const r = await runWorldDoctor(fakeSystem(macHealthy()), settings());
    golden("macos-world-healthy", r.envelope);
    expect(r.exitCode).toBe(0);
  });

  test("disabled: short-circuit — no socket probe, no systemd, no agent call; exit 4", async () => {
    const sys = fakeSystem(linuxHealthy());
    let called = false;
    const r = await runWorldDoctor(sys, settings({ world_enabled: false, enabled_source: "--no-world" }), async () => {
      called = true;
      throw new Error("must not be called");
    });
    golden("linux-world-disabled", r.envelope);
    expect(called).toBe(false);
    expect(sys.fetched).toEqual([]);
    expect(sys.ran).toEqual([]);
    expect(r.envelope.world).toMatchObject({ status: "disabled", ok: false });
    expect(r.exitCode).toBe(4);
    checkText(r.text, WORLD_HEADER);
  });

  test("macos disabled: no guest command", async () => {
    const sys = fakeSystem(macHealthy());
    const r = await runWorldDoctor(sys, settings({ world_enabled: false, enabled_source: "--no-world" }));
    expect(sys.ran.some((c) => c.startsWith("limactl shell"))).toBe(false);
    expect(r.exitCode).toBe(4);
  });

  test("agent unreachable: status unreachable, exit 3", async () => {
    const spec = linuxHealthy();
    delete spec.http!["/run/substrate.sock /v1/doctor/world"];
    const r = await runWorldDoctor(fakeSystem(spec), settings());
    golden("linux-world-unreachable", r.envelope);
    expect(r.envelope.world.status).toBe("unreachable");
    expect(r.exitCode).toBe(3);
  });

  test("agent HTTP 500: unreachable with the agent's message, never ok", async () => {
    const spec = linuxHealthy();
    spec.http!["/run/substrate.sock /v1/doctor/world"] = {
      status: 500,
      body: JSON.stringify({ error: { code: "internal", message: "internal error: EROFS" } }),
    };
    const r = await runWorldDoctor(fakeSystem(spec), settings());
    expect(r.envelope.ok).toBe(false);
    expect(r.envelope.world).toMatchObject({ status: "unreachable", message: "HTTP 500 internal: internal error: EROFS" });
    expect(r.exitCode).toBe(3);
  });

  test("an older agent without the route (404): unreachable with that reason", async () => {
    const spec = linuxHealthy();
    spec.http!["/run/substrate.sock /v1/doctor/world"] = {
      status: 404,
      body: JSON.stringify({ error: { code: "not_found", message: "no route GET /v1/doctor/world" } }),
    };
    const r = await runWorldDoctor(fakeSystem(spec), settings());
    expect(r.envelope.world).toMatchObject({ status: "unreachable", message: "the agent does not serve GET /v1/doctor/world (older agent version)" });
    expect(r.exitCode).toBe(3);
  });

  test("agent reachable but cannot enforce: missing_prereqs, exit 4", async () => {
    const spec = linuxHealthy();
    const bad = { ...WORLD_REPORT_OK, ok: false, landlock: { supported: false, abi: null, reason: "Landlock is built in but disabled at boot" } };
    spec.http!["/run/substrate.sock /v1/doctor/world"] = { status: 200, body: JSON.stringify(bad) };
    const r = await runWorldDoctor(fakeSystem(spec), settings());
    golden("linux-world-missing-prereqs", r.envelope);
    expect(r.envelope.world.status).toBe("missing_prereqs");
    expect(r.exitCode).toBe(4);
    expect(r.text).toContain("FAIL  | landlock: unsupported");
    checkText(r.text, WORLD_HEADER);
  });

  test("an agent report that lies about ok is refused (unreachable), never passed through", async () => {
    const spec = linuxHealthy();
    const liar = { ...WORLD_REPORT_OK, landlock: { supported: false, abi: null, reason: "off" } };
    spec.http!["/run/substrate.sock /v1/doctor/world"] = { status: 200, body: JSON.stringify(liar) };
    const r = await runWorldDoctor(fakeSystem(spec), settings());
    expect(r.envelope.ok).toBe(false);
    expect(r.envelope.world.status).toBe("unreachable");
  });

  test("host not ok + world ok → ok=false, exit 4", async () => {
    const r = await runWorldDoctor(fakeSystem(linuxHealthy({ bins: ["fuse-overlayfs", "systemctl"] })), settings());
    expect(r.envelope.host.ok).toBe(false);
    expect(r.envelope.world.ok).toBe(true);
    expect(r.envelope.ok).toBe(false);
    expect(r.exitCode).toBe(4);
  });

  test("macos VM stopped: no guest call, unreachable, exit 3", async () => {
    const spec = macHealthy();
    spec.commands!["limactl list substrate --json"] = { stdout: `${JSON.stringify({ name: "substrate", status: "Stopped" })}\n` };
    const sys = fakeSystem(spec);
    const r = await runWorldDoctor(sys, settings());
    expect(sys.ran.some((c) => c.startsWith("limactl shell"))).toBe(false);
    expect(r.envelope.world).toMatchObject({ status: "unreachable", message: "Lima VM 'substrate' is Stopped" });
    expect(r.exitCode).toBe(3);
  });

  test("macos with SUBSTRATE_WORLD_SOCKET: asks that host socket, not the guest", async () => {
    const spec = macHealthy({ env: { SUBSTRATE_WORLD_SOCKET: "/Users/t/.substrate/sock/agent.sock" } });
    const sock = "/Users/t/.substrate/sock/agent.sock";
    spec.http = { [`${sock} /v1/doctor/world`]: { status: 200, body: JSON.stringify(WORLD_REPORT_OK) } };
    const sys = fakeSystem(spec);
    const r = await runWorldDoctor(sys, settings({ socket_path: sock })); // as resolveWorldSettings derives it
    expect(sys.fetched).toEqual([`${sock} /v1/doctor/world`]);
    expect(sys.ran.some((c) => c.includes("/v1/doctor/world"))).toBe(false);
    expect(r.exitCode).toBe(0);
  });

  test("windows: golden JSON, exit 4", async () => {
    const r = await runWorldDoctor(fakeSystem({ platform: "windows" }), settings());
    golden("windows-world", r.envelope);
    expect(r.exitCode).toBe(4);
  });
});
