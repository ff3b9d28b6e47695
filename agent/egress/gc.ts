/**
 * What is left to collect now that worlds have no host-side network (issue 15): the per-world
 * gateway socket dirs (`<stateDir>/egress/<world>/`) of worlds that are gone (an agent that
 * was SIGKILLed never closed them; its worlds died with it, see the lifeline), and, with a
 * TTL, worlds older than it (spec env; the world manager's own teardown destroys them).
 *
 * Spec env: SUBSTRATE_NETNS_GC_INTERVAL_SECS (default 600, 0 = no timer),
 * SUBSTRATE_NETNS_GC_TTL_SECS (default 0 = off): read as a maximum world age.
 */
import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";

export interface NetnsGcOptions {
  stateDir: string;
  /** The live worlds: id and creation time (ms since the epoch). */
  worlds: () => Array<{ id: string; createdAt: number }>;
  destroyWorld?: (worldId: string) => Promise<void>;
  intervalSecs?: number;
  ttlSecs?: number;
  log?: (msg: string) => void;
}

export interface GcReport {
  /** Socket dirs of worlds that are gone. */
  collected: string[];
  /** Worlds handed to destroyWorld because of the TTL. */
  expired: string[];
  errors: string[];
}

export interface NetnsGc {
  sweep(): Promise<GcReport>;
  stop(): void;
  readonly intervalSecs: number;
  readonly ttlSecs: number;
}

const envSecs = (name: string, dflt: number): number => {
  const v = process.env[name];
  if (v === undefined || v === "") return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new RangeError(`${name}=${JSON.stringify(v)} must be a number of seconds ≥ 0`);
  return n;
};

export function startNetnsGc(o: NetnsGcOptions): NetnsGc {
  const intervalSecs = o.intervalSecs ?? envSecs("SUBSTRATE_NETNS_GC_INTERVAL_SECS", 600);
  const ttlSecs = o.ttlSecs ?? envSecs("SUBSTRATE_NETNS_GC_TTL_SECS", 0);
  const sweep = async (): Promise<GcReport> => {
    const report: GcReport = { collected: [], expired: [], errors: [] };
    const live = o.worlds();
    const ids = new Set(live.map((w) => w.id));
    let dirs: string[] = [];
    try {
      dirs = readdirSync(join(o.stateDir, "egress"));
    } catch {}
    for (const d of dirs) {
      // A world dir still there belongs to a live world (maybe another agent's on this state
      // dir: the manager's sweepStale removes only dead ones, and runs first).
      if (ids.has(d) || existsSync(join(o.stateDir, "worlds", d))) continue;
      try {
        rmSync(join(o.stateDir, "egress", d), { recursive: true, force: true });
        report.collected.push(d);
      } catch (e) {
        report.errors.push(`${d}: ${(e as Error).message}`);
      }
    }
    if (ttlSecs > 0 && o.destroyWorld) {
      for (const w of live) {
        if (Date.now() - w.createdAt <= ttlSecs * 1000) continue;
        try {
          await o.destroyWorld(w.id);
          report.expired.push(w.id);
        } catch (e) {
          report.errors.push(`${w.id}: destroyWorld: ${(e as Error).message}`);
        }
      }
    }
    if (report.errors.length) o.log?.(`netns gc: ${report.errors.join("; ")}`);
    return report;
  };
  let timer: ReturnType<typeof setInterval> | undefined;
  if (intervalSecs > 0) {
    timer = setInterval(() => void sweep().catch(() => {}), intervalSecs * 1000);
    timer.unref();
  }
  return { sweep, stop: () => clearInterval(timer), intervalSecs, ttlSecs };
}
