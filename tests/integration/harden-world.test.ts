/**
 * hardenSelf composed with a real world (World.create: unshare + spawner + pivot_root): the
 * spawner hardens itself once, and every command it forks is restricted.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WorldSpec } from "../../src/contract/world.ts";
import { HardeningReport } from "../../src/contract/hardening.ts";
import { World } from "../../agent/world/session.ts";

const SPAWNER = join(import.meta.dir, "fixtures", "hardened-spawner.ts");
let stateDir: string;
let project: string;
const worlds: World[] = [];

beforeAll(() => {
  stateDir = mkdtempSync(join(tmpdir(), "substrate-hw-state-"));
  project = mkdtempSync(join(tmpdir(), "substrate-hw-proj-"));
});
afterAll(async () => {
  for (const w of worlds) await w.destroy();
  rmSync(stateDir, { recursive: true, force: true });
  rmSync(project, { recursive: true, force: true });
});

async function world(mode: "baseline" | "isolated"): Promise<World> {
  const w = await World.create({
    spec: WorldSpec.parse({ project_dir: project, isolate_network: true }),
    stateDir,
    selfArgv: [process.execPath, SPAWNER],
    harden: { mode, landlock: true },
  });
  worlds.push(w);
  return w;
}
async function sh(w: World, cmd: string, pty?: { cols: number; rows: number }): Promise<{ exit: number; out: string }> {
  let out = "";
  const p = w.spawn(
    { argv: ["/bin/bash", "-c", cmd], cwd: project, env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/root" }, pty },
    { onStdout: (b) => (out += Buffer.from(b).toString()), onStderr: (b) => (out += Buffer.from(b).toString()) },
  );
  const e = await p.exited;
  return { exit: e.exit, out };
}

describe.each(["isolated", "baseline"] as const)("%s world", (mode) => {
  let w: World;
  beforeAll(async () => {
    w = await world(mode);
  });
  test("the spawner reports every layer applied", () => {
    const r = HardeningReport.parse(w.hardening);
    expect(r.degraded).toEqual([]);
    expect(r.mode).toBe(mode);
    expect(r.landlock.rw).toContain(project);
  });
  test("commands show NoNewPrivs: 1 and Seccomp: 2", async () => {
    const r = await sh(w, "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status");
    expect(r.out).toMatch(/NoNewPrivs:\s+1/);
    expect(r.out).toMatch(/Seccomp:\s+2/);
  });
  test("mount fails with EPERM", async () => {
    const r = await sh(w, "mkdir -p /tmp/m; mount -t tmpfs none /tmp/m 2>&1; echo rc=$?; unshare --net true 2>&1; echo rc=$?");
    expect(r.out).toMatch(/permission denied|not permitted/i);
    expect(r.out).not.toContain("rc=0");
  });
  test("root writes the project and /tmp, but not /proc/sys or anywhere else", async () => {
    const r = await sh(
      w,
      `echo ${mode} > ${project}/from-${mode}.txt && echo p-ok; echo t > /tmp/t && echo t-ok; ` +
        "(echo 1 > /proc/sys/kernel/printk_ratelimit) 2>/dev/null && echo SYSCTL-WRITTEN || echo sysctl-denied; " +
        "(echo 900 > /proc/self/oom_score_adj) 2>/dev/null && echo OOM-WRITTEN || echo oom-denied; id -u",
    );
    expect(r.out.split("\n").slice(0, 5)).toEqual(["p-ok", "t-ok", "sysctl-denied", "oom-denied", "0"]);
    expect(readFileSync(join(project, `from-${mode}.txt`), "utf8")).toBe(`${mode}\n`);
  });
  test("a PTY works under Landlock's ioctl rule (terminal size, tty name)", async () => {
    const r = await sh(w, "tty; stty size", { cols: 101, rows: 31 });
    expect(r.out).toMatch(/\/dev\/pts\/\d+/);
    expect(r.out).toContain("31 101");
  });
  test("ptrace of a process outside the Landlock domain (the world's PID 1) fails", async () => {
    const r = await sh(w, "strace -qq -p 1 -e trace=none 2>&1 & sleep 0.3; kill %1 2>/dev/null; wait");
    expect(r.out).toMatch(/Operation not permitted/);
  });
});
