/**
 * Idle session worlds are retired (issue 18.6). A long-lived agent used to keep one session
 * world (a spawner of ~40 MB RSS, an egress helper, a cgroup) for every project it ever
 * served, forever.
 *
 * - Idle: no command of the world in flight, and none started or handed out by the manager
 *   for `ttlMs` (SUBSTRATE_WORLD_IDLE_SECS, default DEFAULT_IDLE_SECS; 0 = never retire).
 *   A command that runs longer than the TTL keeps its world: the clock starts when the last
 *   command ends.
 * - Retired: torn down like any world (manager.destroy): its PID namespace goes, so its
 *   BACKGROUND processes (`server &` left running by an earlier command) are SIGKILLed with
 *   it; its egress gateway + helper and cgroup are removed. The next execute for that
 *   project builds a fresh world (the project's files are untouched: they live on the host).
 * - Only session (reusable) worlds: isolated and one-shot worlds are destroyed by whoever
 *   made them; spares have their own TTL (spares.ts).
 * - No periodic wake-up: one timer, armed for the earliest deadline, none while no session
 *   world is idle (an idle agent should not wake; see the unit's BUN_GC_TIMER_DISABLE).
 */
import type { WorldIdleStats } from "../../src/contract/index.ts";
import type { World } from "./session.ts";

export const DEFAULT_IDLE_SECS = 15 * 60;
/** setTimeout fires at once beyond 2^31-1 ms (~24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** SUBSTRATE_WORLD_IDLE_SECS as milliseconds; invalid values fall back to the default (said once). */
export function idleTtlMsFromEnv(env: Record<string, string | undefined> = process.env, log?: (m: string) => void): number {
  const raw = env.SUBSTRATE_WORLD_IDLE_SECS;
  if (raw === undefined || raw.trim() === "") return DEFAULT_IDLE_SECS * 1000;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) {
    log?.(`SUBSTRATE_WORLD_IDLE_SECS=${JSON.stringify(raw)} is not a number of seconds >= 0; using ${DEFAULT_IDLE_SECS} (0 keeps idle worlds forever)`);
    return DEFAULT_IDLE_SECS * 1000;
  }
  return Math.min(n * 1000, MAX_TIMER_MS);
}

interface Watched {
  inflight: number;
  /** When the world was last handed out, or its last command ended. */
  last: number;
}

export interface IdleReaperOptions {
  ttlMs: number;
  /** Tear the world down (manager: forget + destroy). */
  retire: (w: World) => Promise<unknown>;
  log?: (msg: string) => void;
  now?: () => number;
}

export class IdleReaper {
  private watched = new Map<World, Watched>();
  private timer?: ReturnType<typeof setTimeout>;
  private retired = 0;
  private stopped = false;
  private readonly now: () => number;

  constructor(private readonly o: IdleReaperOptions) {
    this.now = o.now ?? Date.now;
  }

  /**
   * Track a session world: its commands are counted through its `spawn` (wrapped here, so
   * session.ts needs no hook), and it is forgotten when its processes end.
   */
  watch(w: World): void {
    if (this.watched.has(w)) return;
    const st: Watched = { inflight: 0, last: this.now() };
    this.watched.set(w, st);
    const spawn = w.spawn.bind(w);
    w.spawn = (...args: Parameters<World["spawn"]>) => {
      const p = spawn(...args);
      st.inflight++;
      st.last = this.now();
      void p.exited
        .catch(() => {})
        .finally(() => {
          st.inflight--;
          st.last = this.now();
          this.arm();
        });
      return p;
    };
    void w.proc.exited.then(() => this.watched.delete(w));
    this.arm();
  }

  /** The manager handed `w` out for an execute: its idle clock restarts. */
  touch(w: World): void {
    const st = this.watched.get(w);
    if (st) st.last = this.now();
  }

  stats(): WorldIdleStats {
    const t = this.now();
    let idle = 0; // session worlds with no command in flight right now
    for (const st of this.watched.values()) if (st.inflight === 0) idle++;
    void t;
    return { ttl_secs: this.o.ttlMs / 1000, idle, retired: this.retired };
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** One timer for the earliest deadline among idle worlds; none when nothing is idle. */
  private arm(): void {
    if (this.stopped || this.o.ttlMs <= 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    let due = Infinity;
    for (const st of this.watched.values()) if (st.inflight === 0) due = Math.min(due, st.last + this.o.ttlMs);
    if (due === Infinity) return;
    this.timer = setTimeout(() => void this.sweep(), Math.min(MAX_TIMER_MS, Math.max(0, due - this.now()) + 5));
  }

  private async sweep(): Promise<void> {
    this.timer = undefined;
    const t = this.now();
    const victims = [...this.watched].filter(([, st]) => st.inflight === 0 && t - st.last >= this.o.ttlMs).map(([w]) => w);
    for (const w of victims) {
      this.watched.delete(w);
      this.o.log?.(`[${w.id}] idle for ${this.o.ttlMs / 1000} s: retiring the session world (its background processes end with it)`);
      await this.o.retire(w).then(
        () => this.retired++, // counted once torn down (processes, network, cgroup, dir)
        (e) => this.o.log?.(`[${w.id}] retiring failed: ${(e as Error).message}`),
      );
    }
    this.arm();
  }
}
