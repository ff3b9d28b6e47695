/**
 * Pre-warmed isolated worlds (issue 3, "isolated exec incl. diff <= 10 ms"): creating an
 * isolated world (cgroup, unshare, spawner boot, Landlock/seccomp, and with a netns its lo-only
 * setup + nft + egress helper) is ~300-700 ms, the command itself a few. So the world for the NEXT
 * isolated execute of a spec is built in the background, while nobody waits for it.
 *
 * - Keyed like session worlds: the overlay base + every spec field that shapes a world.
 * - At most one spare per key: after an isolated execute is done (diff read), the next one
 *   starts warming (WorldAgentService.execute calls `warm`). The idle cost is one
 *   world per recently used isolated spec, at most MAX_SPARES (the oldest goes first); a
 *   spare not taken within the TTL
 *   (`SUBSTRATE_SPARE_TTL_SECS`, default 60, 0 = pool off) is destroyed.
 * - Each spare has its own fresh overlay dirs (`<base>/<its world id>/{upper,work}`): an upper
 *   dir is never reused, so every isolated execute starts from the host project as it is
 *   (the lower layer is the live project dir).
 * - Spares are not executes (stats): they only count as created worlds. They are listed in
 *   GET /v1/worlds (isolated, 0 execs) since they hold resources; deleting one there just
 *   drops it from the pool.
 * - Shutdown waits for spares being warmed, destroys every spare and discards its overlay dir.
 *
 * Trap: overlayfs calls changes to a lower dir while mounted "undefined behaviour". In
 * practice lookups go to the live lower tree; only dentries the overlay cached before the
 * change could be stale, and a spare has looked up nothing inside the project yet (the
 * spawner only mounts it). Applying an isolated result changes the project through the agent:
 * `invalidate()` then drops the spares anyway (tests cover host edits made
 * while a spare waited).
 */
import type { WorldOwner } from "./manager.ts";
import { dirname } from "node:path";
import { newWorldId, type SparePoolStats, type WorldSpec } from "../../src/contract/index.ts";
import { discardOverlay } from "./apply.ts";
import { prepareOverlayDirs, type OverlayDirs } from "./overlay.ts";
import { WorldProcess, type World, type WorldOptions } from "./session.ts";

export const DEFAULT_SPARE_TTL_SECS = 60;
/** Bound on the idle cost when many specs are used within a TTL (each spare is a world: ~50 MB). */
export const MAX_SPARES = 8;

/** `SUBSTRATE_SPARE_TTL_SECS` in ms; a value that is not a number >= 0 falls back to the default (logged). */
export function spareTtlMsFromEnv(env: Record<string, string | undefined> = process.env, log?: (m: string) => void): number {
  const raw = env.SUBSTRATE_SPARE_TTL_SECS;
  if (raw === undefined || raw.trim() === "") return DEFAULT_SPARE_TTL_SECS * 1000;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) {
    log?.(`SUBSTRATE_SPARE_TTL_SECS=${JSON.stringify(raw)} is not a number of seconds >= 0; using ${DEFAULT_SPARE_TTL_SECS} (0 turns the isolated world pool off)`);
    return DEFAULT_SPARE_TTL_SECS * 1000;
  }
  // setTimeout fires at once beyond 2^31-1 ms (~24.8 days): cap there instead.
  return Math.min(n * 1000, 2 ** 31 - 1);
}

/** An isolated world and the overlay dirs it writes to. */
export interface IsolatedWorld {
  world: World;
  overlay: OverlayDirs;
  /** Taken from the pool (built before the execute asked for it). */
  prewarmed: boolean;
}

export interface SparePoolOptions {
  /** Idle TTL of a spare; 0 = no pool (every isolated execute builds its world). */
  ttlMs: number;
  /** At most this many spares in all (default MAX_SPARES): warming one more drops the oldest. */
  max?: number;
  /** Build an isolated world with `extra.id` on `extra.overlay` (WorldManager.create). */
  create: (spec: WorldSpec, extra: Partial<WorldOptions> & { owner?: WorldOwner }) => Promise<World>;
  /** Destroy a world the pool owns (forget it in the manager, then World.destroy). */
  destroy: (w: World) => Promise<void>;
  log?: (msg: string) => void;
}


interface Spare {
  key: string;
  project: string;
  /** null when warming failed (logged); the taker then builds its own world. */
  ready: Promise<IsolatedWorld | null>;
  timer?: ReturnType<typeof setTimeout>;
}

/** Every spec field that shapes a world (reuse_session does not: isolated worlds are never reused). */
export const spareKey = (s: WorldSpec, overlayBase: string, o?: WorldOwner): string =>
  JSON.stringify([o?.caller.uid ?? null, o?.agentId ?? null, overlayBase, s.project_dir, s.isolate_network, s.limits, s.allowed_domains, s.fs_mode, s.fs_isolation, s.enable_preload, s.fs_view ?? null, s.allow_ptrace, s.root_inside]);

export class SparePool {
  private readonly spares = new Map<string, Spare>();
  /** Disposals in flight (shutdown awaits them). */
  private readonly pending = new Set<Promise<void>>();
  private closing = false;
  private readonly counts = { hits: 0, misses: 0, warmed: 0, dropped: 0 };

  constructor(private readonly o: SparePoolOptions) {}

  get enabled(): boolean {
    return this.o.ttlMs > 0;
  }

  /**
   * A fresh isolated world for `spec` (reuse_session is ignored): the pool's spare when there
   * is one (waiting for it if it is still being warmed: it is ahead of a new build), else one
   * built now. Throws OverlayError / WorldStartError like a cold build; its overlay dirs are
   * then gone. The caller calls `warm()` once the execute is done (not here: building a world
   * is ~100 ms of CPU, which on a small machine would slow this execute's own command, stop
   * and diff; measured: stop went from ~10 ms to 100-190 ms with a spare warming beside it).
   */
  async acquire(spec: WorldSpec, overlayBase: string, owner?: WorldOwner): Promise<IsolatedWorld> {
    const key = spareKey(spec, overlayBase, owner);
    let got: IsolatedWorld | null = null;
    const s = this.spares.get(key);
    if (s) {
      this.unpool(s);
      got = await s.ready;
      if (got && !got.world.healthy()) {
        this.o.log?.(`spare world ${got.world.id} is no longer healthy; building a new one`);
        await this.dispose(got);
        got = null;
      }
    }
    let r: IsolatedWorld;
    if (got) {
      this.counts.hits++;
      r = { ...got, prewarmed: true };
    } else {
      if (this.enabled) this.counts.misses++;
      r = await this.build(spec, overlayBase, owner);
    }
    return r;
  }

  /** Start warming a spare for this spec unless the pool is off, closing, or has one. */
  warm(spec: WorldSpec, overlayBase: string, owner?: WorldOwner): void {
    const key = spareKey(spec, overlayBase, owner);
    if (!this.enabled || this.closing || this.spares.has(key)) return;
    // Over the bound: the spare warmed longest ago goes (Map order is insertion order).
    while (this.spares.size >= (this.o.max ?? MAX_SPARES)) {
      const oldest = this.spares.values().next().value!;
      this.unpool(oldest);
      this.track(oldest.ready.then((r) => (r ? this.dispose(r) : undefined)));
    }
    const s: Spare = { key, project: spec.project_dir, ready: Promise.resolve(null) };
    s.ready = this.build(spec, overlayBase, owner).then(
      async (r) => {
        await prime(r.world);
        this.counts.warmed++;
        if (this.spares.get(key) === s) {
          // Unused for the TTL: destroy it (its overlay dir holds nothing but the empty upper).
          s.timer = setTimeout(() => {
            if (this.spares.get(key) !== s) return;
            this.unpool(s);
            this.o.log?.(`spare world ${r.world.id} unused for ${this.o.ttlMs / 1000} s; destroying it`);
            this.track(this.dispose(r));
          }, this.o.ttlMs);
          s.timer.unref?.();
        }
        // A spare that ends on its own (killed, deleted through the API) leaves the pool; the
        // manager tears the world down, the overlay dir is ours to discard.
        void r.world.proc.exited.then(() => {
          if (this.spares.get(key) !== s) return;
          this.unpool(s);
          this.track(this.dispose(r));
        });
        return r;
      },
      (e) => {
        this.o.log?.(`warming a spare isolated world for ${spec.project_dir} failed: ${(e as Error).message}`);
        if (this.spares.get(key) === s) this.unpool(s);
        return null;
      },
    );
    this.spares.set(key, s);
  }

  /** Drop the spares of a project, or all (a project changed through the agent: apply). */
  invalidate(projectDir?: string): void {
    for (const s of [...this.spares.values()]) {
      if (projectDir !== undefined && s.project !== projectDir) continue;
      this.unpool(s);
      this.track(s.ready.then((r) => (r ? this.dispose(r) : undefined)));
    }
  }

  /** Destroy every spare (also those still warming) and discard their overlay dirs. */
  async shutdown(): Promise<void> {
    this.closing = true;
    for (const s of [...this.spares.values()]) {
      this.unpool(s);
      this.track(s.ready.then((r) => (r ? this.dispose(r) : undefined)));
    }
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  stats(): SparePoolStats {
    return { ttl_secs: this.o.ttlMs / 1000, spares: this.spares.size, ...this.counts };
  }

  private unpool(s: Spare): void {
    if (this.spares.get(s.key) === s) this.spares.delete(s.key);
    if (s.timer) clearTimeout(s.timer);
  }

  private async build(spec: WorldSpec, overlayBase: string, owner?: WorldOwner): Promise<IsolatedWorld> {
    const id = newWorldId();
    const overlay = prepareOverlayDirs(id, overlayBase);
    try {
      const world = await this.o.create({ ...spec, reuse_session: false }, { id, overlay: { upper: overlay.upper, work: overlay.work }, owner });
      return { world, overlay, prewarmed: false };
    } catch (e) {
      await discardOverlay(overlay.dir, overlayBase).catch(() => {});
      throw e;
    }
  }

  private async dispose(r: IsolatedWorld): Promise<void> {
    this.counts.dropped++;
    try {
      await this.o.destroy(r.world);
    } catch (e) {
      this.o.log?.(`teardown of spare world ${r.world.id} failed: ${(e as Error).message}`);
    }
    await discardOverlay(r.overlay.dir, overlayBaseOf(r.overlay)).catch((e) =>
      this.o.log?.(`discarding the overlay dir of spare world ${r.world.id} failed: ${(e as Error).message}`),
    );
  }

  private track(p: Promise<void>): void {
    const q = p.catch((e) => this.o.log?.(`spare pool: ${(e as Error).message}`)).finally(() => this.pending.delete(q));
    this.pending.add(q);
  }
}

/**
 * Run `/bin/true` once in a spare (cwd `/`: the project is never touched, nothing reaches the
 * upper dir): the spawner's first command pays its JIT/lazy-init cost (measured ~1.5 ms of the
 * first exec), not the execute that takes the spare. Not an execute (World.spawn would count it).
 */
async function prime(w: World): Promise<void> {
  await new WorldProcess(w.ctl, { argv: ["/bin/true"], cwd: "/", env: { PATH: "/usr/bin:/bin" } }, {}).exited.catch(() => {});
}

/** `<base>/<id>` → `<base>` (discardOverlay refuses dirs outside the base). */
const overlayBaseOf = (o: OverlayDirs): string => dirname(o.dir);
