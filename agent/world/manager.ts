/**
 * Owns the agent's worlds: one reusable session world per (project, spec) key, created on
 * first use and shared by later executes (spec: "Session World (Reusable by Default)"),
 * plus short-lived isolated worlds. Creation is de-duplicated, so concurrent first
 * executes for one project build exactly one world.
 */
import { readdirSync, readFileSync, rmdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { WorldSpec, WorldStats } from "../../src/contract/index.ts";
import type { Caller } from "../../src/contract/world.ts";
import { socketAnswers as answers } from "../../src/sys/unix-socket.ts";
import { World, type WorldOptions } from "./session.ts";
import { protectedFingerprint } from "./fsview.ts"; // FSVIEW: which protected paths exist is part of the key
import { SparePool, spareTtlMsFromEnv, type IsolatedWorld } from "./spares.ts";
import { IdleReaper, idleTtlMsFromEnv } from "./idle.ts"; // issue 18.6 (DEPLOY)
import { removeEmptyCgroupTree } from "./cgroups.ts"; // issue 18.3 (DEPLOY)

export interface ManagerOptions {
  stateDir: string;
  selfArgv: string[];
  log?: (msg: string) => void;
  /**
   * Hardening for a world's spawner (see harden.ts). Default: baseline seccomp (logs) +
   * Landlock for session worlds; isolated seccomp (EPERM) + Landlock for isolated worlds.
   */
  harden?: (spec: WorldSpec, isolated: boolean) => WorldOptions["harden"];
  network?: WorldOptions["network"];
  /** Idle TTL of pre-warmed isolated worlds (spares.ts); default SUBSTRATE_SPARE_TTL_SECS or 60 s, 0 = off. */
  spareTtlMs?: number;
  /** At most this many spares in all (spares.ts MAX_SPARES). */
  spareMax?: number;
  /** The agent's own paths hidden in every world (its API socket, the overlay base; the state dir always). */
  hide?: string[];
  /** Issue 18.6 (idle.ts): idle session worlds are retired after this; default SUBSTRATE_WORLD_IDLE_SECS or 15 min, 0 = never. */
  idleTtlMs?: number;
}

/**
 * Issue 13/14.2: whose world. A session world belongs to one caller (uid) and one agent_id:
 * two uids never share one, and neither do two agents of one uid (a process agent A leaves
 * behind must not see agent B's commands, environment or scope tokens).
 */
export interface WorldOwner {
  caller: Caller;
  agentId: string;
}
/** No owner given (in-process callers, tests): the agent's own uid, anonymous agent. */
const anonymous = (): WorldOwner | undefined => undefined;

const sessionKey = (s: WorldSpec, o?: WorldOwner): string =>
  // Issue 15 (EGRESS): not the allowlist: a policy change applies to the live world (setEgressPolicy).
  JSON.stringify([o?.caller.uid ?? null, o?.agentId ?? null, s.project_dir, s.isolate_network, s.limits, s.fs_mode, s.fs_isolation, s.enable_preload, s.fs_view ?? null, s.allow_ptrace, s.root_inside, protectedFingerprint(s.project_dir, s.fs_view)]);

export const defaultHarden = (spec: WorldSpec, isolated: boolean): WorldOptions["harden"] => ({
  mode: isolated ? "isolated" : "baseline",
  landlock: true,
  ...(spec.allow_ptrace ? { allowPtrace: true } : {}),
});

export class WorldManager {
  private sessions = new Map<string, Promise<World>>();
  private all = new Map<string, World>();
  private stats = { created: 0, reused: 0, executes: 0 };
  /** Issue 3 (pool): host-side teardowns finishing in the background (release); shutdown awaits them. */
  private teardowns = new Set<Promise<void>>();
  /** Issue 3 (pool): pre-warmed isolated worlds, see spares.ts. Spares are created worlds, never executes. */
  readonly spares: SparePool;
  /** Issue 18.6 (DEPLOY, idle.ts): retires idle session worlds. */
  readonly idle: IdleReaper;

  constructor(private readonly o: ManagerOptions) {
    this.idle = new IdleReaper({ ttlMs: o.idleTtlMs ?? idleTtlMsFromEnv(process.env, o.log), retire: (w) => this.destroy(w.id), log: o.log });
    this.spares = new SparePool({
      ttlMs: o.spareTtlMs ?? spareTtlMsFromEnv(process.env, o.log),
      max: o.spareMax,
      create: (spec, extra) => this.create(spec, extra, true),
      destroy: async (w) => {
        this.forget(w);
        await w.destroy();
      },
      log: o.log,
    });
  }

  /**
   * Remove world dirs left by an agent that died without tearing down. A dir whose
   * spawner still answers belongs to a live world (another agent sharing this state dir)
   * and is left alone.
   */
  async sweepStale(): Promise<string[]> {
    const dir = join(this.o.stateDir, "worlds");
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      return [];
    }
    const removed: string[] = [];
    for (const n of names) {
      if (this.all.has(n)) continue;
      if (await answers(join(dir, n, "ctl.sock"))) continue;
      rmSync(join(dir, n), { recursive: true, force: true });
      removed.push(n);
    }
    return removed;
  }

  private async create(spec: WorldSpec, extra: Partial<WorldOptions> & { owner?: WorldOwner } = {}, isolated = false): Promise<World> {
    const { owner, ...rest } = extra;
    const w = await World.create({
      spec,
      stateDir: this.o.stateDir,
      selfArgv: this.o.selfArgv,
      log: this.o.log,
      harden: (this.o.harden ?? defaultHarden)(spec, isolated),
      network: this.o.network,
      ...(this.o.hide ? { hide: this.o.hide } : {}),
      ...(owner ? { caller: owner.caller } : {}),
      ...rest,
    });
    w.owner = owner;
    this.stats.created++;
    this.all.set(w.id, w);
    // A world can end on its own (its spawner crashed, a limit killed it): tear down what it
    // leaves on the host (egress gateway + helper, cgroup, dirs) instead of just forgetting it.
    void w.proc.exited.then(() => {
      this.forget(w);
      this.track(w.destroy()); // tracked: shutdown waits for it (nothing left once the agent stops)
    });
    return w;
  }

  private forget(w: World): void {
    this.all.delete(w.id);
    for (const [k, p] of this.sessions) {
      void p.then((x) => {
        if (x === w && this.sessions.get(k) === p) this.sessions.delete(k);
      }, () => {});
    }
  }

  /**
   * Remove empty world cgroups (`…/substrate/wld_*` under any controller) that no live world
   * of ours owns: what a crashed agent leaves. Non-empty ones are left alone.
   */
  async sweepStaleCgroups(root = "/sys/fs/cgroup", settleMs = 300): Promise<string[]> {
    const empty = (p: string): boolean => {
      try {
        return readFileSync(join(p, "cgroup.procs"), "utf8").trim() === "";
      } catch {
        return false;
      }
    };
    const candidates: string[] = [];
    const walk = (dir: string, depth: number) => {
      let entries: string[];
      try {
        entries = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
      } catch {
        return;
      }
      for (const name of entries) {
        const p = join(dir, name);
        if (name.startsWith("wld_") && dir.endsWith("/substrate")) {
          if (!this.all.has(name) && empty(p)) candidates.push(p);
        } else if (depth < 6 && !name.startsWith("lima-emu")) walk(p, depth + 1);
      }
    };
    walk(root, 0);
    if (candidates.length === 0) return [];
    // Another agent's world being born is empty too, for a few ms (its cgroup exists before its
    // first process enters): a crashed agent's leftover is still empty a moment later.
    await Bun.sleep(settleMs);
    const removed: string[] = [];
    for (const p of candidates) {
      try {
        // issue 18.3 (DEPLOY): a world cgroup has spawner/cmds children, removed first
        if (empty(p) && removeEmptyCgroupTree(p)) removed.push(p);
      } catch {}
    }
    return removed;
  }

  /** Forget and destroy a session world that stopped working (its ctl socket is gone). */
  async discardBroken(w: World): Promise<void> {
    this.forget(w);
    await w.destroy();
  }

  /** The session world for this spec: reused when alive, created otherwise. */
  async session(spec: WorldSpec, owner: WorldOwner | undefined = anonymous()): Promise<World> {
    this.stats.executes++;
    if (!spec.reuse_session) return this.create(spec, { owner });
    const key = sessionKey(spec, owner);
    const existing = this.sessions.get(key);
    if (existing) {
      const w = await existing.catch(() => null);
      if (w?.healthy()) {
        this.stats.reused++;
        this.idle.touch(w); // issue 18.6 (DEPLOY)
        w.setEgressPolicy(spec); // issue 15 (EGRESS): live allowlist + budget
        return w;
      }
      // Its spawner died or its dir was removed under it: replace it, don't keep failing.
      if (w) {
        this.o.log?.(`session world ${w.id} is broken; replacing it`);
        await this.discardBroken(w);
      }
      if (this.sessions.get(key) === existing) this.sessions.delete(key);
      return this.session(spec, owner).finally(() => this.stats.executes--);
    }
    const p = this.create(spec, { owner });
    this.sessions.set(key, p);
    p.then((w) => this.idle.watch(w), () => this.sessions.delete(key)); // issue 18.6 (DEPLOY): watch

    return p;
  }

  /** A fresh world used once (isolated executes, replay). Caller destroys it. */
  async ephemeral(spec: WorldSpec, extra: Partial<WorldOptions> & { owner?: WorldOwner } = {}): Promise<World> {
    this.stats.executes++;
    return this.create(spec, extra, true);
  }

  /**
   * Issue 3 (pool): a fresh isolated world on its own fresh overlay dirs under `overlayBase`:
   * a pre-warmed spare when there is one, else built now (the caller warms the next one with
   * `spares.warm` once the execute is done).
   * Counts as an execute (spares themselves never do). Caller: release(), then read the upper dir.
   */
  async isolated(spec: WorldSpec, overlayBase: string, owner: WorldOwner | undefined = anonymous()): Promise<IsolatedWorld> {
    this.stats.executes++;
    const r = await this.spares.acquire(spec, overlayBase, owner);
    r.world.setEgressPolicy(spec); // issue 15 (EGRESS): a spare follows this execute's policy
    return r;
  }

  /**
   * Issue 3 (pool): end a used isolated world on the critical path only as far as correctness
   * needs: once this resolves its processes are gone (nothing writes or holds the upper dir),
   * while the egress gateway + helper, cgroup and dirs are torn down in the background
   * (tracked; shutdown awaits them; errors are logged).
   */
  async release(w: World): Promise<void> {
    this.forget(w);
    await w.stop();
    this.track(w.destroy());
  }

  private track(p: Promise<void>): void {
    const q: Promise<void> = p
      .catch((e) => this.o.log?.(`teardown failed: ${(e as Error).message}`))
      .finally(() => this.teardowns.delete(q));
    this.teardowns.add(q);
  }

  get(id: string): World | undefined {
    return this.all.get(id);
  }

  list(): World[] {
    return [...this.all.values()];
  }

  async destroy(id: string): Promise<boolean> {
    const w = this.all.get(id);
    if (!w) return false;
    this.forget(w);
    await w.destroy();
    return true;
  }

  async shutdown(): Promise<void> {
    this.idle.stop(); // issue 18.6 (DEPLOY)
    await this.spares.shutdown(); // spares (also those warming) + their overlay dirs
    await Promise.all([...this.all.values()].map((w) => w.destroy()));
    while (this.teardowns.size > 0) await Promise.all([...this.teardowns]); // background teardowns (release)
    this.sessions.clear();
  }

  worldStats(): WorldStats {
    const { created, reused, executes } = this.stats;
    return {
      active: this.all.size,
      created,
      reused,
      executes,
      reuse_ratio: executes === 0 ? 0 : reused / executes,
      spares: this.spares.stats(), // issue 3: the isolated world pool
      idle: this.idle.stats(), // issue 18.6 (DEPLOY): idle session worlds
    };
  }
}
