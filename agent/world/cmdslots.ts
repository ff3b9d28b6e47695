/**
 * Issue 14.2: every command in a leaf cgroup of its own ("slot", `<cmds>/c<N>`), so what it
 * leaves running when it ends — `server &`, `setsid … &`, a daemon that double-forks — is found
 * and killed, unless the request keeps it (`keep_background`). A process cannot leave its
 * cgroup: moving needs write access to some `cgroup.procs`, and a world has none (cgroupfs is
 * not mounted writable there, and Landlock would refuse it anyway). Process groups and
 * sessions are no such boundary (`setsid` makes a new one).
 *
 * The slots live below the command cgroup (cgroups.ts, issue 18.3), so the commands' shared
 * limit still holds them all. Stage 1 of the spawner creates and opens them as root before
 * Landlock (fds cross the re-exec); stage 2 forks into them like cgroups.ts does into `cmds`:
 * v2 with CLONE_INTO_CGROUP (Bun.spawn `cgroup: fd`), v1 by stepping the forking thread in and
 * back out around the synchronous fork.
 *
 * When no slot is free (more than SLOTS commands at once, or a slot still held by kept
 * processes) or the world has no command cgroup, a command's leftovers are found by its process
 * group only (the command's own; `setsid` escapes that) — said in docs/WORLD.md.
 */
import { chownSync, mkdirSync, openSync, readdirSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";

/** Commands tracked at once per world (each slot: a cgroup dir and two fds). */
export const SLOTS = 16;

export interface SlotFds {
  /** v1: `<slot>/tasks` (write); v2: the slot dir (CLONE_INTO_CGROUP). */
  join: number;
}

/**
 * Stage 1 (root, host tree visible): create the slot dirs under the command cgroup and open
 * them. v2 slots are handed to the commands' owner (CLONE_INTO_CGROUP is checked against the
 * forking process, which then runs as the caller). Empty on any failure (said on stderr).
 */
export function openSlots(cmdsDir: string, mode: "v1" | "v2", owner?: { uid: number; gid: number }, n = SLOTS): SlotFds[] {
  const out: SlotFds[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const dir = join(cmdsDir, `c${i}`);
      mkdirSync(dir, { recursive: true });
      if (mode === "v2" && owner && owner.uid !== 0) chownSync(join(dir, "cgroup.procs"), owner.uid, owner.gid);
      out.push({ join: openSync(mode === "v1" ? join(dir, "tasks") : dir, mode === "v1" ? "w" : "r") });
    }
  } catch (e) {
    process.stderr.write(`cgroups: cannot create the per-command cgroups under ${cmdsDir} (${(e as Error).message}); leftover processes are found by process group only\n`);
    return [];
  }
  return out;
}

/**
 * Who is in slot `i`, from the world's own /proc (`/proc/<pid>/cgroup` ends in `/cmds/c<i>`).
 * Not from the slot's `cgroup.procs` fd: v1 caches a pid list per open file (re-reading the
 * same fd returns the list of its first read for a second), and a world cannot open it anew.
 */
export function slotMembers(i: number, procDir = "/proc"): number[] {
  const suffix = `/cmds/c${i}`;
  const out: number[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(procDir);
  } catch {
    return out;
  }
  for (const n of names) {
    if (n.charCodeAt(0) < 48 || n.charCodeAt(0) > 57) continue;
    try {
      const lines = readFileSync(`${procDir}/${n}/cgroup`, "utf8").split("\n");
      if (lines.some((l) => l.endsWith(suffix))) out.push(Number(n));
    } catch {}
  }
  return out;
}

export class CommandSlots {
  private busy = new Set<number>();
  /** Released with kept processes in them: free again only once empty. */
  private kept = new Set<number>();

  /**
   * `back`: v1 only, the fd of the cgroup the forking thread returns to (the world's `tasks`).
   */
  constructor(
    private readonly mode: "v1" | "v2" | "none",
    private readonly slots: SlotFds[],
    private readonly back?: number,
  ) {}

  /** Every fd (to keep across execve / close-on-exec for commands). */
  get fds(): number[] {
    return this.slots.map((s) => s.join);
  }

  /** A free slot, marked busy; undefined when none. No /proc scan unless only kept slots are left. */
  acquire(): number | undefined {
    if (this.mode === "none") return undefined;
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < this.slots.length; i++) {
        if (this.busy.has(i) || this.kept.has(i)) continue;
        this.busy.add(i);
        return i;
      }
      // every slot is running or holds kept processes: those whose processes ended are free
      if (round === 0) for (const i of [...this.kept]) if (this.pids(i).length === 0) this.kept.delete(i);
    }
    return undefined;
  }

  /** The command in slot `i` ended; `kept`: its background processes were left running. */
  release(i: number, kept = false): void {
    this.busy.delete(i);
    if (kept) this.kept.add(i);
  }

  /** Fork into slot `i`: `f` gets the Bun.spawn `cgroup` option to spread in. */
  spawnInto<T>(i: number, f: (opt: { cgroup?: number }) => T): T {
    const s = this.slots[i]!;
    if (this.mode === "v2") return f({ cgroup: s.join });
    // v1: this (the JS) thread's tid is process.pid, in the writer's pid namespace.
    writeSync(s.join, String(process.pid));
    try {
      return f({});
    } finally {
      if (this.back !== undefined) writeSync(this.back, String(process.pid));
    }
  }

  /** Pids in slot `i` now (this process's pid namespace). */
  pids(i: number): number[] {
    return slotMembers(i);
  }

  /**
   * SIGKILL everything in slot `i` until it is empty (a fork racing the read is caught by the
   * next round; the commands' pids limit bounds how many there can be). Returns how many died.
   */
  async kill(i: number, deadlineMs = 2000): Promise<number> {
    const seen = new Set<number>();
    const end = Date.now() + deadlineMs;
    for (;;) {
      const left = this.pids(i);
      if (left.length === 0 || Date.now() > end) return seen.size;
      for (const p of left) {
        if (p === process.pid) continue; // (never: the forking thread is back before any await)
        seen.add(p);
        try {
          process.kill(p, "SIGKILL");
        } catch {}
      }
      await Bun.sleep(2);
    }
  }
}
