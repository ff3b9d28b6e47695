/** Rebuild state + warm lock (src/lima/state.ts), in a private SUBSTRATE_HOME. */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { acquireWarmLock, LockBusy, readRebuildState, rebuildInProgress, writeRebuildState } from "../../../src/lima/state.ts";

const home = mkdtempSync(join(tmpdir(), "substrate-lima-state-"));
const env = { SUBSTRATE_HOME: home } as NodeJS.ProcessEnv;
afterAll(() => rmSync(home, { recursive: true, force: true }));

/** A pid that certainly does not exist any more. */
function deadPid(): number {
  const p = Bun.spawnSync(["sh", "-c", "echo $$"], { stdout: "pipe" });
  return Number(p.stdout.toString().trim());
}

describe("rebuild state", () => {
  test("in progress while our pid is alive and the phase is not ready/failed", () => {
    writeRebuildState("substrate", "provisioning", "agent missing", env);
    expect(rebuildInProgress(env)?.phase).toBe("provisioning");
    expect(readRebuildState(env)?.message).toBe("agent missing");
    writeRebuildState("substrate", "ready", undefined, env);
    expect(rebuildInProgress(env)).toBeNull();
  });
  test("a state left by a dead process is not 'in progress'", () => {
    const s = { phase: "recreating", pid: deadPid(), started_at: "x", updated_at: "y", instance: "substrate" };
    writeFileSync(join(home, "lima", "state.json"), JSON.stringify(s));
    expect(readRebuildState(env)?.phase).toBe("recreating");
    expect(rebuildInProgress(env)).toBeNull();
  });
});

describe("warm lock", () => {
  test("exclusive while held; released; a dead holder's lock is taken over", async () => {
    const release = await acquireWarmLock(0, env);
    expect(existsSync(join(home, "lima", "warm.lock"))).toBe(true);
    // Same process again would wait on itself: a live holder → LockBusy after the wait.
    await expect(acquireWarmLock(300, env)).rejects.toBeInstanceOf(LockBusy);
    release();
    expect(existsSync(join(home, "lima", "warm.lock"))).toBe(false);
    writeFileSync(join(home, "lima", "warm.lock"), `${deadPid()}\n`);
    const r2 = await acquireWarmLock(0, env);
    r2();
    expect(existsSync(join(home, "lima", "warm.lock"))).toBe(false);
  });
});
