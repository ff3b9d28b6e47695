/**
 * `substrate world warm|status|stop|restart|verify` in socket-activation mode, for real: the
 * compiled linux host binary runs as root (via sudo, so SUDO_USER=lima) inside the harness
 * guest, a Debian 12 with systemd as PID 1 (tests/e2e/harness). Proves the Linux host gets the
 * Lima guest's layout from the same binary, that warm is idempotent (second run: no action,
 * same InvocationID = nothing restarted), that a different agent binary is replaced and the
 * service restarted, that a project under /home is writable for worlds, and stop/restart.
 *
 * Needs root (nspawn); builds dist/ with `scripts/build.ts --native` (unchanged inputs are
 * not rebuilt) so the binary carries this checkout's code.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join, resolve } from "node:path";
import { LifecycleReport, VerifyReport, WorldStatusReport } from "../../src/contract/index.ts";
import { createGuest, destroyGuest, ensureGuestImage, LINUX_BOX_ENV, type Guest } from "./harness/harness.ts";

const ROOT = resolve(import.meta.dir, "../..");
const HOST_BIN = join(ROOT, "dist", `substrate-linux-${process.arch === "arm64" ? "arm64" : "x64"}`);
let g: Guest;
/** Per-test timeout: the machine may be loaded by parallel suites (never a time assertion). */
const T = 180_000;

/** `limactl shell` → the guest user's login shell (new login: current groups). */
const sh = (...args: string[]) => g.limactl(["shell", g.name, ...args]);
const must = (...args: string[]): string => {
  const r = sh(...args);
  if (r.code !== 0) throw new Error(`${args.join(" ")} → exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
};
const lifecycle = (cmd: string): LifecycleReport => LifecycleReport.parse(JSON.parse(must("sudo", "substrate", "world", cmd, "--json")));
const service = () => {
  const kv = new Map(must("sudo", "systemctl", "show", "--property=InvocationID,MainPID,ActiveState", "substrate-world-agent.service").trim().split("\n").map((l) => l.split("=", 2) as [string, string]));
  return { invocation: kv.get("InvocationID")!, pid: Number(kv.get("MainPID")), active: kv.get("ActiveState")! };
};

beforeAll(() => {
  const b = Bun.spawnSync([process.execPath, join(ROOT, "scripts/build.ts"), "--native"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  if (b.exitCode !== 0) throw new Error(`build failed: ${b.stderr.toString()}`);
  ensureGuestImage();
  g = createGuest(`lsd${process.pid}`, { env: { ...LINUX_BOX_ENV } }); // a plain systemd box: user lima, /home/lima.linux, fresh logins
  const c = g.limactl(["copy", HOST_BIN, `${g.name}:substrate`]);
  if (c.code !== 0) throw new Error(`limactl copy: ${c.stderr}`);
  must("sudo", "install", "-m", "0755", "substrate", "/usr/local/bin/substrate");
}, 600_000);

afterAll(() => {
  if (g) {
    const left = destroyGuest(g);
    if (left.length) throw new Error(`guest left things behind: ${left.join("; ")}`);
  }
}, 120_000);

describe("Linux host, root + systemd: socket activation", () => {
  let first: ReturnType<typeof service>;

  test("warm installs the agent, the shipped units, group + membership, enables the socket, validates", () => {
    // First a manual-mode agent on the same socket (root without the units yet): warm in
    // socket-activation mode must stop exactly it before systemd takes the socket over.
    const m = LifecycleReport.parse(JSON.parse(must("sudo", "substrate", "world", "warm", "--mode", "manual", "--json")));
    expect(m).toMatchObject({ mode: "manual", actions: ["started_agent"] });
    const r = lifecycle("warm");
    expect(r.actions).toContain("stopped_agent");
    expect(sh("test", "-e", `/proc/${m.pid}`).code).not.toBe(0);
    expect(r).toMatchObject({ ok: true, mode: "socket_activation", socket_path: "/run/substrate.sock" });
    for (const a of ["installed_agent", "installed_units", "updated_dropin", "created_group", "added_user_to_group", "daemon_reload", "enabled_socket", "started_socket"] as const)
      expect(r.actions).toContain(a);
    expect(r.agent_version).toBe(r.expected_agent_version!);
    expect(r.guidance.join("\n")).toContain("newgrp substrate");
    expect(r.guidance.join("\n")).toContain("loginctl enable-linger lima");
    expect(must("stat", "-c", "%U:%G %a", "/run/substrate.sock").trim()).toBe("root:substrate 660");
    expect(must("id", "-nG", "lima").split(/\s+/)).toContain("substrate");
    // The units are the Lima guest's, byte for byte.
    must("sh", "-c", "substrate world assets extract /tmp/assets >/dev/null 2>&1 || sudo substrate world assets extract /tmp/assets >/dev/null");
    must("sudo", "cmp", "/tmp/assets/guest-assets/substrate-world-agent.socket", "/etc/systemd/system/substrate-world-agent.socket");
    must("sudo", "cmp", "/tmp/assets/guest-assets/substrate-world-agent.service", "/etc/systemd/system/substrate-world-agent.service");
    expect(must("systemctl", "is-enabled", "substrate-world-agent.socket").trim()).toBe("enabled");
    // The invoking user (new login = new groups) reaches the agent without sudo.
    const caps = JSON.parse(must("curl", "-sf", "--unix-socket", "/run/substrate.sock", "http://localhost/v1/capabilities"));
    expect(caps.api_version).toBe("v1");
    first = service();
    expect(first.active).toBe("active");
    expect(r.pid).toBe(first.pid);
  }, T);

  test("warm again: no action, nothing restarted (same InvocationID and MainPID)", () => {
    const r = lifecycle("warm");
    expect(r.actions).toEqual([]);
    const now = service();
    expect(now.invocation).toBe(first.invocation);
    expect(now.pid).toBe(first.pid);
  }, T);

  test("a user's warm uses the system agent (in group: nothing started); not in group: exit 3 with the group fix", () => {
    const r = LifecycleReport.parse(JSON.parse(must("substrate", "world", "warm", "--json")));
    expect(r).toMatchObject({ mode: "socket_activation", socket_path: "/run/substrate.sock", actions: [] });
    expect(sh("test", "-e", "/home/lima.linux/.substrate/run/substrate.sock").code).not.toBe(0); // no rootless agent
    must("sudo", "useradd", "-m", "-s", "/bin/sh", "outsider");
    const o = sh("sudo", "-u", "outsider", "-H", "substrate", "world", "warm");
    expect(o.code).toBe(3);
    expect(o.stderr).toContain("refuses you");
    expect(o.stderr).toContain("usermod -aG substrate");
  }, T);

  test("a project under /home is writable for worlds (drop-in: ProtectHome=no + ReadWritePaths)", () => {
    must("sh", "-c", "mkdir -p ~/.substrate ~/proj && printf '[world]\\nisolate_network = false\\n' > ~/.substrate/config.toml");
    const r = sh("sh", "-c", "cd ~/proj && substrate -c 'echo from-world > made-in-world && pwd'");
    expect(r.stderr).not.toContain("Read-only");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("/home/lima.linux/proj");
    expect(must("cat", "/home/lima.linux/proj/made-in-world").trim()).toBe("from-world");
  }, T);

  test("status: socket_activation, units active, MainPID, versions match, live worlds", () => {
    const r = sh("sudo", "substrate", "world", "status", "--json");
    expect(r.code).toBe(0);
    const s = WorldStatusReport.parse(JSON.parse(r.stdout));
    expect(s).toMatchObject({
      backend: "linux-local",
      mode: "socket_activation",
      running: true,
      agent: { version_match: true, pid: first.pid },
      socket: { path: "/run/substrate.sock", owner: "root", group: "substrate", mode: "0660" },
      units: { socket: "active", service: "active", socket_enabled: "enabled" },
    });
    expect(s.worlds.some((w) => w.project_dir === "/home/lima.linux/proj")).toBe(true);
  }, T);

  test("a different agent binary is replaced and the service restarted", () => {
    must("sudo", "sh", "-c", "printf '#!/bin/sh\\necho old agent\\n' > /usr/local/bin/substrate-world-agent.old && mv -f /usr/local/bin/substrate-world-agent.old /usr/local/bin/substrate-world-agent");
    const r = lifecycle("warm");
    expect(r.actions).toContain("replaced_agent");
    expect(r.actions).toContain("restarted");
    expect(r.agent_version).toBe(r.expected_agent_version!);
    const now = service();
    expect(now.invocation).not.toBe(first.invocation);
    expect(lifecycle("warm").actions).toEqual([]);
  }, T);

  test("verify runs under the unit's sandbox; a policy without network isolation FAILS the network checks", () => {
    // Root's config turns network isolation off: the egress checks must fail, exit non-zero.
    must("sudo", "sh", "-c", "mkdir -p /root/.substrate && printf '[world]\\nisolate_network = false\\n' > /root/.substrate/config.toml");
    const r = sh("sudo", "substrate", "world", "verify", "--json");
    expect(r.code).toBe(4);
    const v = VerifyReport.parse(JSON.parse(r.stdout));
    const st = Object.fromEntries(v.checks.map((c) => [c.id, c.status]));
    expect(v.ok).toBe(false);
    expect(st).toMatchObject({
      project_writable: "pass",
      system_read_only: "pass",
      outside_project_denied: "pass",
      host_processes_invisible: "pass",
      own_network_namespace: "fail",
      egress_refused: "fail",
      ipv6_dropped: "fail",
      seccomp_no_new_privs: "pass",
      mount_denied_isolated: "pass",
      overlay_diff_captured: "pass",
    });
    must("sudo", "rm", "-f", "/root/.substrate/config.toml");
  }, T);

  test("stop stops socket and service; status says so (exit 3); restart brings both back", () => {
    const s = lifecycle("stop");
    expect(s.actions).toEqual(["stopped_agent"]);
    expect(sh("systemctl", "is-active", "substrate-world-agent.socket").stdout.trim()).toBe("inactive");
    expect(sh("test", "-e", "/run/substrate.sock").code).not.toBe(0);
    const st = sh("sudo", "substrate", "world", "status", "--json");
    expect(st.code).toBe(3);
    expect(WorldStatusReport.parse(JSON.parse(st.stdout)).running).toBe(false);

    const r = lifecycle("restart");
    expect(r.actions).toContain("started_socket");
    expect(JSON.parse(must("curl", "-sf", "--unix-socket", "/run/substrate.sock", "http://localhost/v1/capabilities")).api_version).toBe("v1");
    expect(lifecycle("warm").actions).toEqual([]);
  }, T);
});

/**
 * Issue 18.2: world limits under the unit, for real. The unit has Delegate=yes, so systemd
 * gives the agent its own cgroup in every controller hierarchy and the worlds nest inside it.
 *
 * This guest is hybrid (v1 memory/cpu/pids, a controller-less v2 tree), like the host; nspawn
 * mounts the v1 controllers READ-ONLY, which no VM does. So first the guest gets what a VM has:
 * the controllers remounted writable (per mount, `remount,bind,rw`) and systemd re-executed so
 * it manages them. The guest's cgroups are the instance's own (harness: lima-emu-<key> in every
 * hierarchy), so everything created here goes with it. Judged by the kernel's counters
 * (memory oom_kill, pids.events, cpu.stat nr_throttled), never by time.
 */
describe("world limits under the systemd unit (Delegate=yes)", () => {
  const execute = (body: Record<string, unknown>) => {
    const r = g.limactl(["shell", g.name, "curl", "-s", "--unix-socket", "/run/substrate.sock", "-H", "content-type: application/json", "-X", "POST", "http://localhost/v1/execute", "--data-binary", "@-"], { stdin: JSON.stringify(body) });
    if (r.code !== 0) throw new Error(`execute → exit ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as { exit?: number; stdout_b64?: string; world_id?: string; error?: { message: string } };
  };
  const out = (r: { stdout_b64?: string }) => Buffer.from(r.stdout_b64 ?? "", "base64").toString();
  const proj = "/home/lima.linux/limits";
  const run = (cmd: string, limits: Record<string, unknown>) =>
    execute({ cmd, cwd: proj, agent_id: "limits", world: { project_dir: proj, isolate_network: false, limits } });
  /** The world's cgroup dir in a v1 hierarchy of the guest (under the unit's own cgroup). */
  const worldDir = (ctl: string, world: string) => must("sudo", "sh", "-c", `find /sys/fs/cgroup/${ctl} -maxdepth 6 -type d -name '${world}' | head -1`).trim();
  let agentPid = 0;
  const journal = () => sh("sudo", "journalctl", "-u", "substrate-world-agent", "--no-pager", "-n", "30").stdout;

  test("the unit is delegated; the agent runs in its own cgroup of every controller", () => {
    must("sudo", "sh", "-c", "for c in memory cpu pids; do mount -o remount,bind,rw /sys/fs/cgroup/$c; done; systemctl daemon-reexec");
    must("sudo", "systemctl", "restart", "substrate-world-agent.service");
    must("mkdir", "-p", proj);
    expect(must("systemctl", "show", "-p", "Delegate", "--value", "substrate-world-agent.service").trim()).toBe("yes");
    expect(JSON.parse(must("curl", "-sf", "--unix-socket", "/run/substrate.sock", "http://localhost/v1/capabilities")).api_version).toBe("v1");
    agentPid = service().pid;
    const cg = must("cat", `/proc/${agentPid}/cgroup`);
    for (const c of ["memory", "pids"]) expect(cg).toMatch(new RegExp(`^\\d+:${c}:/system\\.slice/substrate-world-agent\\.service$`, "m"));
  }, T);

  test("a memory hog is OOM-killed; the world and the agent live on", () => {
    const limits = { memory: "64Mi" };
    const r = run("head -c 512M /dev/zero | tail -n 1 > /dev/null; echo survived=$?", limits);
    expect(out(r)).toBe("survived=137\n");
    const dir = worldDir("memory", r.world_id!);
    expect(dir).toStartWith("/sys/fs/cgroup/memory/system.slice/substrate-world-agent.service/substrate/");
    expect(Number(/^oom_kill (\d+)/m.exec(must("cat", `${dir}/memory.oom_control`))?.[1])).toBeGreaterThanOrEqual(1);
    const again = run("echo alive", limits);
    expect(out(again)).toBe("alive\n");
    if (again.world_id !== r.world_id) throw new Error(`the world was replaced; agent log:\n${journal()}`);
    expect(service().pid).toBe(agentPid);
  }, T);

  test("a fork bomb is bounded by the command cgroup; the same world serves the next command", () => {
    const limits = { pids: 64 };
    const first = run("grep :pids: /proc/self/cgroup", limits);
    expect(out(first)).toMatch(/:pids:.*\/cmds(\/[^/\n]+)?\n$/); // the command is in the command cgroup (or a per-command leaf below it)
    const dir = worldDir("pids", first.world_id!);
    expect(dir).toStartWith("/sys/fs/cgroup/pids/system.slice/substrate-world-agent.service/substrate/");
    expect(must("cat", `${dir}/cmds/pids.max`).trim()).toBe("64");
    const bomb = run("sleep 4 & s=$!; (b(){ b | b & }; b) 2>/dev/null & wait $s; kill -9 0", limits);
    expect(bomb.world_id).toBe(first.world_id);
    // Forks refused per cgroup (v1 counts them in the forking task's cgroup): the command
    // cgroup's subtree vs the world's own processes.
    const events = (d: string) => Number(/^max (\d+)/m.exec(must("cat", `${d}/pids.events`))?.[1]);
    const tree = (d: string) => must("sudo", "find", d, "-name", "pids.events").trim().split("\n").reduce((n, f) => n + events(f.slice(0, -"/pids.events".length)), 0);
    const ev = { cmds: tree(`${dir}/cmds`), world: events(dir) };
    if (!(ev.cmds > 0 && ev.world === 0)) throw new Error(`pids.events max: ${JSON.stringify(ev)} (want cmds > 0, world 0); bomb: ${JSON.stringify(bomb)}; agent log:\n${journal()}`);
    const again = run("echo alive", limits);
    expect(out(again)).toBe("alive\n");
    expect(again.world_id).toBe(first.world_id);
    expect(service().pid).toBe(agentPid);
  }, T);

  test("cpu is throttled (cpu.stat nr_throttled)", () => {
    const r = run("timeout 1 sh -c 'while :; do :; done'; echo spun", { cpu: "0.2" });
    expect(out(r)).toBe("spun\n");
    const dir = worldDir("cpu", r.world_id!);
    expect(dir).toContain("/substrate/");
    expect(Number(/^nr_throttled (\d+)/m.exec(must("cat", `${dir}/cpu.stat`))?.[1])).toBeGreaterThan(0);
    expect(service().pid).toBe(agentPid);
  }, T);
});
