/**
 * Manual mode for real (root, no systemd: this host): `substrate world warm|status|stop|
 * restart` on a private socket (SUBSTRATE_WORLD_SOCKET), so /run/substrate.sock is never
 * touched. Warm twice changes nothing; stop signals exactly the pid of its pid file and only
 * after /proc/PID/cmdline proves it is our agent; a version mismatch replaces the agent.
 * The CLI runs from source (its agent is `bun agent/main.ts`, version 0.1.0+dev.dev).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { LifecycleReport, WorldStatusReport } from "../../src/contract/index.ts";
import { isAgentFor, procAlive } from "../../src/lifecycle/agent-process.ts";
import { AgentClient } from "../../src/api/client.ts";

const ROOT = resolve(import.meta.dir, "../..");
const CLI = [process.execPath, join(ROOT, "src/main.ts")];
let dir: string;
let socket: string;
let pidFile: string;
let home: string;
const spawned: ReturnType<typeof Bun.spawn>[] = [];

/** env values "" are removed (e.g. no SUBSTRATE_WORLD_SOCKET at all). */
function substrate(args: string[], env: Record<string, string> = {}) {
  const full: Record<string, string> = { PATH: process.env.PATH!, HOME: home, SUBSTRATE_WORLD_SOCKET: socket, ...env };
  for (const k of Object.keys(full)) if (full[k] === "") delete full[k];
  const p = Bun.spawnSync([...CLI, ...args], {
    cwd: dir,
    env: full,
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}
const lifecycle = (cmd: string, env: Record<string, string> = {}) => {
  const r = substrate(["world", cmd, "--json"], env);
  if (r.code !== 0) throw new Error(`world ${cmd} exit ${r.code}: ${r.out}${r.err}`);
  return LifecycleReport.parse(JSON.parse(r.out));
};
const status = () => {
  const r = substrate(["world", "status", "--json"]);
  return { code: r.code, report: WorldStatusReport.parse(JSON.parse(r.out)) };
};
const filePid = () => Number(readFileSync(pidFile, "utf8").trim());

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "substrate-lc-manual-"));
  home = join(dir, "home");
  socket = join(dir, "agent.sock");
  pidFile = `${socket}.pid`;
});

afterAll(() => {
  // Stop through the product; then make sure nothing of ours survived.
  if (existsSync(pidFile)) substrate(["world", "stop"]);
  for (const p of spawned) p.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

describe("manual mode (root without systemd)", () => {
  let firstPid = 0;

  test("warm starts the agent on the private socket with a pid file; status reports it", async () => {
    const r = lifecycle("warm");
    expect(r).toMatchObject({ command: "warm", ok: true, mode: "manual", socket_path: socket, actions: ["started_agent"], agent_version: "0.1.0+dev.dev" });
    firstPid = filePid();
    expect(r.pid).toBe(firstPid);
    expect(isAgentFor(firstPid, socket)).toBe(true);
    expect(statSync(socket).mode & 0o777).toBe(0o660);

    const s = status();
    expect(s.code).toBe(0);
    expect(s.report).toMatchObject({
      backend: "linux-local",
      mode: "manual",
      running: true,
      agent: { version: "0.1.0+dev.dev", embedded_version: "0.1.0+dev.dev", version_match: true, pid: firstPid },
      socket: { path: socket, exists: true, owner: "root", mode: "0660" },
      units: null,
    });
    expect(s.report.agent.uptime_ms).toBeGreaterThanOrEqual(0);
  });

  test("warm again changes nothing and restarts nothing (same pid)", () => {
    const r = lifecycle("warm");
    expect(r.actions).toEqual([]);
    expect(r.pid).toBe(firstPid);
    expect(filePid()).toBe(firstPid);
    expect(procAlive(firstPid)).toBe(true);
  });

  test("status lists live worlds (id, project, age, execs)", async () => {
    const proj = join(dir, "proj");
    Bun.spawnSync(["mkdir", "-p", proj]);
    const c = new AgentClient(socket);
    const r1 = await c.execute({ cmd: "true", cwd: proj, agent_id: "t" });
    await c.execute({ cmd: "true", cwd: proj, agent_id: "t" });
    const s = status().report;
    const w = s.worlds.find((x) => x.id === r1.world_id);
    expect(w).toMatchObject({ project_dir: proj, isolated: false, execs: 2 });
    expect(w!.age_ms).toBeGreaterThanOrEqual(0);
  });

  test("stop never signals a pid whose cmdline is not our agent (decoy in the pid file)", () => {
    const decoy = Bun.spawn(["sleep", "600"], { stdout: "ignore", stderr: "ignore" });
    spawned.push(decoy);
    writeFileSync(pidFile, `${decoy.pid}\n`);
    const r = lifecycle("stop");
    expect(r.actions).toEqual(["removed_stale_pid_file"]);
    expect(r.guidance.join(" ")).toContain("was not started by substrate");
    expect(procAlive(decoy.pid)).toBe(true); // the decoy lives
    expect(procAlive(firstPid)).toBe(true); // and so does the agent it was not told about
    decoy.kill("SIGKILL");
    writeFileSync(pidFile, `${firstPid}\n`); // put the truth back
  });

  test("stop stops exactly the agent of the pid file: process, socket and pid file gone", async () => {
    const r = lifecycle("stop");
    expect(r.actions).toEqual(["stopped_agent"]);
    expect(r.pid).toBe(firstPid);
    expect(procAlive(firstPid)).toBe(false);
    expect(existsSync(pidFile)).toBe(false);
    expect(existsSync(socket)).toBe(false);
    const s = status();
    expect(s.code).toBe(3);
    expect(s.report).toMatchObject({ running: false, mode: null, agent: { pid: null, version: null } });
    expect(s.report.error?.hint).toContain("substrate world warm");
    // Stopping again is a no-op, not an error.
    expect(lifecycle("stop").actions).toEqual([]);
  });

  test("a stale pid file (dead pid) is cleaned up by warm; restart gives a new agent", () => {
    writeFileSync(pidFile, "999999\n");
    const r = lifecycle("warm");
    expect(r.actions).toEqual(["removed_stale_pid_file", "started_agent"]);
    const before = filePid();
    const rr = lifecycle("restart");
    expect(rr.command).toBe("restart");
    expect(rr.actions).toEqual(["stopped_agent", "started_agent"]);
    expect(procAlive(before)).toBe(false);
    expect(filePid()).not.toBe(before);
    expect(isAgentFor(filePid(), socket)).toBe(true);
  });

  test("version mismatch: warm replaces our agent with SUBSTRATE_WORLD_AGENT_BIN's", () => {
    const before = filePid();
    // An "agent build" that claims another version and runs the source agent.
    const bin = join(dir, "substrate-world-agent");
    writeFileSync(
      bin,
      `#!/bin/sh\nif [ "$1" = --version ]; then echo '{"version":"9.9.9","commit":"other","agent_hash":"x","target":"linux-x64"}'; exit 0; fi\nexec ${process.execPath} ${join(ROOT, "agent/main.ts")} "$@"\n`,
    );
    chmodSync(bin, 0o755);
    const r = lifecycle("warm", { SUBSTRATE_WORLD_AGENT_BIN: bin });
    expect(r.expected_agent_version).toBe("9.9.9+other.x");
    expect(r.actions).toEqual(["stopped_agent", "started_agent"]);
    expect(procAlive(before)).toBe(false);
    expect(filePid()).not.toBe(before);
    expect(isAgentFor(filePid(), socket)).toBe(true);
  });

  test("a SUBSTRATE_WORLD_AGENT_BIN that does not exist is a usage error (2) with a next step", () => {
    const r = substrate(["world", "warm"], { SUBSTRATE_WORLD_AGENT_BIN: join(dir, "nope") });
    expect(r.code).toBe(2);
    expect(r.err).toContain("SUBSTRATE_WORLD_AGENT_BIN=");
    expect(r.err).toContain("hint:");
    expect(r.err).not.toContain("    at ");
  });

  test("--mode socket_activation without systemd fails with exit 4 and says what to use", () => {
    const r = substrate(["world", "warm", "--mode", "socket_activation"], { SUBSTRATE_WORLD_SOCKET: "" });
    expect(r.code).toBe(4);
    expect(r.err).toContain("systemd is not PID 1");
    expect(r.err).toContain("--mode manual");
  });
});
