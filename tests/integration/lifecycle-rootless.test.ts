/**
 * Rootless mode for real: a throwaway unprivileged user (useradd, temp home; deleted after)
 * runs `substrate world warm|status|verify|stop` and `substrate -c` from source. The agent
 * runs as that user on ~/.substrate/run/substrate.sock; worlds are built in a user
 * namespace where the user is root. Also: where user namespaces are refused, warm names the
 * exact setting (proved in a child user namespace whose user.max_user_namespaces is 0, so
 * the host's own value is never touched).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { LifecycleReport, VerifyReport, WorldStatusReport } from "../../src/contract/index.ts";
import { procAlive } from "../../src/lifecycle/agent-process.ts";
import { runnable, runnableBun } from "../helpers/runnable.ts";

const ROOT = resolve(import.meta.dir, "../..");
// From a mirror when the checkout is not traversable by the throwaway user (issue 18 1b).
const CLI = [runnableBun(), runnable(join(ROOT, "src/main.ts"), false)];
const USER = `sbxrl${process.pid % 100000}`;
let base: string;
let home: string;
let uid: number;
let socket: string;
let created = false;

/** Runs the CLI as USER. The rootless socket is named explicitly only when a system socket
 * exists on this host (then the default would be the system one). */
function asUser(args: string[], cwd = home) {
  const env = [`HOME=${home}`, "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", ...(existsSync("/run/substrate.sock") ? [`SUBSTRATE_WORLD_SOCKET=${socket}`] : [])];
  const p = Bun.spawnSync(["runuser", "-u", USER, "--", "env", "-i", ...env, ...CLI, ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), "substrate-rootless-"));
  chmodSync(base, 0o755);
  home = join(base, "home");
  const r = Bun.spawnSync(["useradd", "-M", "-d", home, "-s", "/bin/bash", USER], { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`useradd: ${r.stderr.toString()}`);
  created = true;
  mkdirSync(home);
  uid = Number(Bun.spawnSync(["id", "-u", USER], { stdout: "pipe" }).stdout.toString().trim());
  Bun.spawnSync(["chown", `${USER}:`, home]);
  socket = join(home, ".substrate", "run", "substrate.sock");
});

afterAll(() => {
  if (created) {
    // Stop our agent through the product (kills exactly its pid), then remove the user.
    asUser(["world", "stop"]);
    Bun.spawnSync(["userdel", USER]);
  }
  rmSync(base, { recursive: true, force: true });
});

describe("rootless mode (unprivileged user)", () => {
  let pid = 0;

  test("warm starts the agent as the user on ~/.substrate/run/substrate.sock (dir 0700); warm again: no change", () => {
    const r = asUser(["world", "warm", "--json"]);
    expect(r.code).toBe(0);
    const rep = LifecycleReport.parse(JSON.parse(r.out));
    expect(rep).toMatchObject({ ok: true, mode: "rootless", socket_path: socket, actions: ["started_agent"] });
    pid = rep.pid!;
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    expect(status).toMatch(new RegExp(`^Uid:\\s+${uid}\\s`, "m")); // runs as the user, not root
    expect(statSync(join(home, ".substrate", "run")).mode & 0o777).toBe(0o700);
    expect(statSync(socket).uid).toBe(uid);
    expect(rep.guidance.join(" ")).toContain("user namespace");

    const again = LifecycleReport.parse(JSON.parse(asUser(["world", "warm", "--json"]).out));
    expect(again.actions).toEqual([]);
    expect(again.pid).toBe(pid);
  }, 60_000);

  test("substrate -c runs in a user namespace as the user's own uid (issue 13: N inside = N outside)", () => {
    const proj = join(home, "proj");
    mkdirSync(proj);
    Bun.spawnSync(["chown", `${USER}:`, proj]);
    const r = asUser(["-c", "id -u; cat /proc/self/uid_map; echo x > made-here; ip -o link show lo"], proj);
    expect(r.code).toBe(0);
    const [inside, map, lo] = r.out.trim().split("\n");
    expect(inside).toBe(String(uid));
    expect(map!.trim().split(/\s+/)).toEqual([String(uid), String(uid), "1"]);
    expect(lo).toMatch(/<LOOPBACK,UP/); // loopback usable (dev servers, tests) though no egress
    expect(statSync(join(proj, "made-here")).uid).toBe(uid);
  }, 60_000);

  test("status: rootless, the user's pid, socket owner", () => {
    const r = asUser(["world", "status", "--json"]);
    expect(r.code).toBe(0);
    const s = WorldStatusReport.parse(JSON.parse(r.out));
    expect(s).toMatchObject({ mode: "rootless", running: true, agent: { pid, version_match: true }, socket: { path: socket, exists: true, owner: USER } });
  }, 60_000);

  test("verify: every guarantee holds; cgroup limits degrade with a WARN that says so", () => {
    const r = asUser(["world", "verify", "--json"]);
    const v = VerifyReport.parse(JSON.parse(r.out));
    const st = Object.fromEntries(v.checks.map((c) => [c.id, c.status]));
    expect(st.cgroup_limits).toBe("warn");
    expect(v.checks.find((c) => c.id === "cgroup_limits")!.detail).toContain("degraded");
    for (const id of ["project_writable", "system_read_only", "outside_project_denied", "host_processes_invisible", "own_network_namespace", "egress_refused", "ipv6_dropped", "seccomp_no_new_privs", "landlock", "mount_denied_isolated", "overlay_diff_captured"])
      expect(`${id}=${st[id]}`).toBe(`${id}=pass`);
    expect(v.ok).toBe(true);
    expect(r.code).toBe(0);
  }, 120_000);

  test("stop stops exactly the user's agent", () => {
    const r = asUser(["world", "stop", "--json"]);
    expect(r.code).toBe(0);
    expect(LifecycleReport.parse(JSON.parse(r.out)).actions).toEqual(["stopped_agent"]);
    expect(procAlive(pid)).toBe(false);
    expect(existsSync(socket)).toBe(false);
  }, 60_000);
});

describe("rootless mode on demand", () => {
  test("substrate -c with no agent at all starts the user's rootless agent (one note line), and it stops cleanly", () => {
    const proj = join(home, "proj2");
    mkdirSync(proj);
    Bun.spawnSync(["chown", `${USER}:`, proj]);
    const r = asUser(["-c", "id -u"], proj);
    expect(r.code).toBe(0);
    expect(r.out.trim()).toBe(String(uid));
    expect(r.err).toContain("started a rootless world agent");
    const s = WorldStatusReport.parse(JSON.parse(asUser(["world", "status", "--json"]).out));
    expect(s).toMatchObject({ mode: "rootless", running: true });
    const pid2 = s.agent.pid!;
    expect(LifecycleReport.parse(JSON.parse(asUser(["world", "stop", "--json"]).out)).actions).toEqual(["stopped_agent"]);
    expect(procAlive(pid2)).toBe(false);
  }, 60_000);
});

describe("rootless mode where user namespaces are refused", () => {
  test("warm fails (exit 4) naming the sysctl and the fix, and starts nothing", () => {
    // A child user namespace with user.max_user_namespaces=0: the kernel refuses nested user
    // namespaces there exactly as a host with the sysctl at 0 would. --mode rootless, since
    // inside it we are (namespaced) root.
    const sub = join(base, "refused");
    const p = Bun.spawnSync(
      ["unshare", "--user", "--map-root-user", "sh", "-c", `echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"`, "sh", ...CLI, "world", "warm", "--mode", "rootless"],
      { env: { PATH: process.env.PATH!, HOME: sub, SUBSTRATE_HOME: join(sub, ".substrate") }, stdout: "pipe", stderr: "pipe" },
    );
    const err = p.stderr.toString();
    expect(p.exitCode).toBe(4);
    expect(err).toContain("user.max_user_namespaces is 0");
    expect(err).toContain("hint: sysctl -w user.max_user_namespaces=");
    expect(existsSync(join(sub, ".substrate", "run", "substrate.sock"))).toBe(false);
    expect(readFileSync("/proc/sys/user/max_user_namespaces", "utf8").trim()).not.toBe("0");
  }, 60_000);
});
