/**
 * "A rebuild is in progress" made visible: `~/.substrate/lima/state.json` (phase, pid) for
 * doctor, plus an exclusive lock so two warms never provision the same VM at once.
 * A lock or state whose pid is gone is stale and ignored.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { LimaRebuildState } from "../contract/index.ts";
import { substrateHome } from "../config.ts";

export const limaStateDir = (env: NodeJS.ProcessEnv = process.env): string => join(substrateHome(env), "lima");
const statePath = (env?: NodeJS.ProcessEnv) => join(limaStateDir(env), "state.json");
const lockPath = (env?: NodeJS.ProcessEnv) => join(limaStateDir(env), "warm.lock");

const pidAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === "EPERM";
  }
};

export function readRebuildState(env?: NodeJS.ProcessEnv): LimaRebuildState | null {
  try {
    const p = LimaRebuildState.safeParse(JSON.parse(readFileSync(statePath(env), "utf8")));
    return p.success ? p.data : null;
  } catch {
    return null;
  }
}

/** For doctor: the rebuild running right now, or null (ready, failed, stale or none). */
export function rebuildInProgress(env?: NodeJS.ProcessEnv): LimaRebuildState | null {
  const s = readRebuildState(env);
  if (!s || s.phase === "ready" || s.phase === "failed") return null;
  return pidAlive(s.pid) ? s : null;
}

export function writeRebuildState(instance: string, phase: LimaRebuildState["phase"], message?: string, env?: NodeJS.ProcessEnv): void {
  mkdirSync(limaStateDir(env), { recursive: true, mode: 0o700 });
  const prev = readRebuildState(env);
  const now = new Date().toISOString();
  const s: LimaRebuildState = {
    phase,
    pid: process.pid,
    started_at: prev && prev.pid === process.pid ? prev.started_at : now,
    updated_at: now,
    instance,
    ...(message ? { message } : {}),
  };
  const tmp = `${statePath(env)}.${process.pid}`;
  writeFileSync(tmp, JSON.stringify(s) + "\n");
  renameSync(tmp, statePath(env));
}

export class LockBusy extends Error {
  override name = "LockBusy";
  constructor(readonly pid: number) {
    super(`another substrate (pid ${pid}) is warming the world VM`);
  }
}

/** Takes the warm lock, waiting up to `waitMs` for a live holder. Returns the release fn. */
export async function acquireWarmLock(waitMs: number, env?: NodeJS.ProcessEnv): Promise<() => void> {
  mkdirSync(limaStateDir(env), { recursive: true, mode: 0o700 });
  const path = lockPath(env);
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      const fd = openSync(path, "wx", 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        try {
          if (readFileSync(path, "utf8").trim() === String(process.pid)) rmSync(path, { force: true });
        } catch {}
        process.off("exit", release);
      };
      process.on("exit", release);
      return release;
    } catch (e) {
      if ((e as { code?: string }).code !== "EEXIST") throw e;
    }
    let holder = 0;
    try {
      holder = Number(readFileSync(path, "utf8").trim());
    } catch {}
    if (!holder || !pidAlive(holder)) {
      rmSync(path, { force: true }); // stale: its owner died
      continue;
    }
    if (Date.now() > deadline) throw new LockBusy(holder);
    await Bun.sleep(200);
  }
}

export const lockExists = (env?: NodeJS.ProcessEnv): boolean => existsSync(lockPath(env));
