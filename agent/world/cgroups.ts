/**
 * Per-world resource limits with cgroups, v2 or v1 chosen by detection.
 *
 * Layout:
 * - v2: `<base>/substrate/<worldId>` with memory.max, memory.swap.max=0, cpu.max
 *   "<quota> 100000", pids.max. `<base>` is the agent's own cgroup when systemd DELEGATED it
 *   (the unit has `Delegate=yes`: the `trusted.delegate` xattr, or a `.service` cgroup holding
 *   only this process); the agent then moves itself to the leaf `<base>/agent` (the "no
 *   internal processes" rule: a cgroup that enables controllers for its children holds no
 *   processes). Otherwise `<base>` is the cgroup2 root (exempt from that rule). The
 *   controllers are enabled in `<base>`'s and `substrate/`'s cgroup.subtree_control. Never a
 *   cgroup systemd owns and did not delegate (issue 18.2: under the unit that was EROFS/no
 *   limits).
 *   Inside a world (issue 18.3): `<world>/spawner` (unshare, the world's init, the spawner) and
 *   `<world>/cmds` (every command, joined at fork: Bun.spawn's `cgroup` option) which holds
 *   the caller's pids (and memory) limit; the world's own limit is that plus headroom, so a
 *   fork bomb exhausts `cmds` and the spawner can still create threads.
 * - v1: one directory per controller hierarchy, nested under the agent's own cgroup of that
 *   hierarchy (`<mount><own path>/substrate/<worldId>`), so a limit placed on the agent (a
 *   systemd unit, a CI runner) still bounds its worlds. memory.limit_in_bytes (+ memsw when
 *   swap accounting exists), cpu.cfs_quota_us/cfs_period_us, pids.max. Commands go to
 *   `<pids world>/cmds` (pids.max = the caller's limit); memory and cpu stay world-wide (a
 *   fork joins one hierarchy; the OOM killer prefers commands, see protectFromOom).
 * - Hybrid machines (v1 controllers + a v2 tree that has none of them, like this Debian host)
 *   use v1. Where neither backend can be used, `createWorldCgroup` returns `{ degraded }`:
 *   one warning, the world runs without limits (spec: graceful degradation).
 *
 * The memory limit bounds RAM + swap (memsw / swap.max=0): a world cannot escape it by swapping.
 * The whole world (spawner included) is in the cgroup; the spawner's RSS (~40 MB of Bun)
 * counts against the limit. `protectFromOom()` makes the OOM killer pick commands, never the
 * spawner — see the trap described there.
 */
import { chownSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmdirSync, writeFileSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { ptr } from "bun:ffi";
import { cstr, sys } from "../../src/sys/libc.ts";

export type CgroupMode = "v2" | "v1" | "hybrid" | "none";
type Controller = "memory" | "cpu" | "pids";
const CONTROLLERS: Controller[] = ["memory", "cpu", "pids"];

export const DEFAULT_PIDS_MAX = 4096;
/** Tasks the world's own processes (unshare, init, the spawner's threads) keep beyond the commands' limit. */
export const SPAWNER_PIDS_HEADROOM = 32;
const CPU_PERIOD_US = 100_000;

export interface CgroupLimits {
  /** CPUs, e.g. "2" or "0.5" */
  cpu?: string;
  /** bytes with an optional suffix: "512Mi", "2Gi", "1G", "1000000" */
  memory?: string;
  /** max tasks (processes + threads); default DEFAULT_PIDS_MAX */
  pids?: number;
}

export interface CgroupStats {
  memory_bytes?: number;
  pids?: number;
  oom_kills?: number;
  /** periods in which the cpu quota was exhausted */
  nr_throttled?: number;
  throttled_usec?: number;
}

export interface WorldCgroup {
  mode: "v2" | "v1";
  /** Every cgroup directory created for this world (one for v2, one per controller for v1). */
  paths: string[];
  /**
   * Issue 18.3: the cgroup every command of the world is forked into (Bun.spawn `cgroup`),
   * holding the commands' limit; the world's own processes stay outside it. Undefined when
   * the world has no pids hierarchy.
   */
  commandCgroup?: string;
  /** Limits that could not be applied (controller missing). Empty = all applied. */
  warnings: string[];
  /** argv to put before `unshare ...` so that process is in the cgroup from its first instruction. */
  enterArgvPrefix(): string[];
  addPid(pid: number): Promise<void>;
  stats(): Promise<CgroupStats>;
  /** SIGKILL what is left in the cgroup (only these dirs, which we created), wait, rmdir. */
  destroy(): Promise<void>;
}

// ---------------------------------------------------------------- parsing

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  K: 1e3, M: 1e6, G: 1e9, T: 1e12,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40,
};

/** "2Gi" -> 2147483648 (Kubernetes-style: K/M/G/T decimal, Ki/Mi/Gi/Ti binary). */
export function parseMemory(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$/.exec(s.trim());
  if (!m) throw new CgroupConfigError(`invalid memory limit "${s}": expected a size such as "512Mi" or "2Gi"`);
  const bytes = Math.floor(Number(m[1]) * SIZE_UNITS[m[2] ?? ""]);
  if (bytes < 4096) throw new CgroupConfigError(`memory limit "${s}" is below one page; use at least "16Mi"`);
  return bytes;
}

/** "0.5" -> 50000 µs of CPU per 100000 µs period. */
export function parseCpuQuota(s: string): number {
  if (!/^\d+(\.\d+)?$/.test(s.trim())) throw new CgroupConfigError(`invalid cpu limit "${s}": expected a CPU count such as "2" or "0.5"`);
  const q = Math.round(Number(s) * CPU_PERIOD_US);
  if (q <= 0) throw new CgroupConfigError(`cpu limit "${s}" must be greater than 0`);
  return Math.max(q, 1000); // kernel minimum quota: 1 ms
}

export class CgroupConfigError extends Error {
  override name = "CgroupConfigError";
}

// ---------------------------------------------------------------- detection

interface Mounts {
  v2?: string;
  /** v1 controller -> mount point */
  v1: Partial<Record<Controller, string>>;
}

function readMounts(): Mounts {
  const out: Mounts = { v1: {} };
  let text = "";
  try {
    text = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return out;
  }
  for (const line of text.split("\n")) {
    const [pre, post] = line.split(" - ");
    if (!post) continue;
    const mountPoint = pre.split(" ")[4];
    const [fstype, , superOpts = ""] = post.split(" ");
    if (fstype === "cgroup2") out.v2 ??= mountPoint;
    else if (fstype === "cgroup") {
      const opts = superOpts.split(",");
      for (const c of CONTROLLERS) if (opts.includes(c)) out.v1[c] ??= mountPoint;
    }
  }
  return out;
}

function v2Controllers(mount: string): Set<string> {
  try {
    return new Set(readFileSync(join(mount, "cgroup.controllers"), "utf8").trim().split(/\s+/).filter(Boolean));
  } catch {
    return new Set();
  }
}

/**
 * "v2": only cgroup2 (mounted at /sys/fs/cgroup); "v1": only v1 hierarchies; "hybrid": both
 * (v1 controllers + a cgroup2 tree, usually /sys/fs/cgroup/unified); "none".
 */
export function detectCgroupMode(): CgroupMode {
  const m = readMounts();
  const hasV1 = Object.keys(m.v1).length > 0;
  if (m.v2 && hasV1) return "hybrid";
  if (m.v2) return "v2";
  if (hasV1) return "v1";
  return "none";
}

/** The agent's own cgroup path in a v1 hierarchy holding `controller` ("/" when unknown). */
function ownV1Path(controller: Controller): string {
  try {
    for (const line of readFileSync("/proc/self/cgroup", "utf8").split("\n")) {
      const [, ctrls, path] = line.split(":");
      if (ctrls !== undefined && ctrls.split(",").includes(controller)) return path || "/";
    }
  } catch {}
  return "/";
}

// ---------------------------------------------------------------- creation

const write = (dir: string, file: string, value: string | number): void => writeFileSync(join(dir, file), String(value));
const readNum = (path: string): number | undefined => {
  try {
    const v = readFileSync(path, "utf8").trim();
    return v === "max" ? undefined : Number(v);
  } catch {
    return undefined;
  }
};
const keyed = (path: string, key: string): number | undefined => {
  try {
    const m = new RegExp(`^${key}\\s+(\\d+)`, "m").exec(readFileSync(path, "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
};
const errMsg = (e: unknown) => (e instanceof Error ? e.message : String(e));
const shQuote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

export interface CreateOptions {
  /** Force a backend (tests; a v2 tree without controllers still gets a cgroup + cgroup.kill). */
  mode?: "v2" | "v1";
  /**
   * Issue 18.3: the commands' own limits (the caller's, without the world's headroom). The
   * command cgroup gets pids.max = `pids` (default: the world's pids minus
   * SPAWNER_PIDS_HEADROOM) and, on v2, memory.max = `memory`. The world's pids.max is kept at
   * least SPAWNER_PIDS_HEADROOM above it.
   */
  commands?: Pick<CgroupLimits, "pids" | "memory">;
  /**
   * Host uid/gid the commands (and stage 2 of the spawner) run as, when not root (a caller,
   * or world root in a user namespace): forking into the command cgroup needs write access
   * to its cgroup.procs (v2: and to the world's, the common ancestor), as in systemd's
   * delegation to a user. Nothing else is handed over.
   */
  commandOwner?: { uid: number; gid: number };
  /** Tests: the v2 base to use instead of detecting one (a scratch cgroup standing in for a delegated unit). */
  v2Base?: string;
}

/** World ids become directory names: keep them boring. */
const SAFE_ID = /^[A-Za-z0-9_.-]{1,128}$/;

export async function createWorldCgroup(
  worldId: string,
  limits: CgroupLimits,
  opts: CreateOptions = {},
): Promise<WorldCgroup | { degraded: string }> {
  if (!SAFE_ID.test(worldId)) throw new CgroupConfigError(`invalid world id for a cgroup name: "${worldId}"`);
  // Validate before touching the kernel: a bad limit is a config error, not a degradation.
  const memory = limits.memory === undefined ? undefined : parseMemory(limits.memory);
  const quota = limits.cpu === undefined ? undefined : parseCpuQuota(limits.cpu);
  const worldPids = limits.pids ?? DEFAULT_PIDS_MAX;
  if (!Number.isInteger(worldPids) || worldPids <= 0) throw new CgroupConfigError(`invalid pids limit ${worldPids}`);
  const cmdPids = opts.commands?.pids ?? Math.max(1, worldPids - SPAWNER_PIDS_HEADROOM);
  if (!Number.isInteger(cmdPids) || cmdPids <= 0) throw new CgroupConfigError(`invalid pids limit ${cmdPids}`);
  const pids = Math.max(worldPids, cmdPids + SPAWNER_PIDS_HEADROOM);
  const cmdMemory = opts.commands?.memory === undefined ? undefined : parseMemory(opts.commands.memory);

  const m = readMounts();
  const v2Ctl = m.v2 ? v2Controllers(m.v2) : new Set<string>();
  const v2Full = m.v2 !== undefined && CONTROLLERS.every((c) => v2Ctl.has(c));
  const v1Any = m.v1.memory !== undefined || m.v1.cpu !== undefined || m.v1.pids !== undefined;
  const mode = opts.mode ?? (v2Full ? "v2" : v1Any ? "v1" : m.v2 && v2Ctl.size > 0 ? "v2" : undefined);
  if (mode === undefined || (mode === "v2" && !m.v2) || (mode === "v1" && !v1Any)) {
    return {
      degraded:
        "cgroups: no usable cgroup v2 or v1 memory/cpu/pids controller; the world runs without cpu/memory/pids limits " +
        "(mount cgroup2 at /sys/fs/cgroup, or run the agent as root on a host with cgroups)",
    };
  }
  const resolved: Resolved = { memory, quota, pids, cmdPids, cmdMemory, owner: opts.commandOwner };
  try {
    if (mode === "v2") {
      const base = opts.v2Base ?? v2Base(m.v2!);
      return createV2(base, v2Controllers(base), worldId, resolved);
    }
    return createV1(m.v1, worldId, resolved);
  } catch (e) {
    const ro = (e as NodeJS.ErrnoException).code === "EROFS";
    return {
      degraded:
        `cgroups (${mode}): cannot create the world's cgroup: ${errMsg(e)}; the world runs without limits` +
        (ro ? " (the cgroup file system is read-only here: a container that does not delegate cgroups; under systemd the unit needs Delegate=yes)" : ""),
    };
  }
}

// ---------------------------------------------------------------- delegation (issue 18.2)

const GETXATTR_NR = process.arch === "arm64" ? 8 : 191;

/** Value of an xattr as text, or undefined (absent, unsupported, error). */
function xattr(path: string, name: string): string | undefined {
  try {
    const out = Buffer.alloc(64);
    const p = cstr(path);
    const n = cstr(name);
    const r = sys(GETXATTR_NR, BigInt(ptr(p)), BigInt(ptr(n)), BigInt(ptr(out)), BigInt(out.length));
    return r >= 0 ? out.subarray(0, r).toString("utf8") : undefined;
  } catch {
    return undefined;
  }
}

/** This process's cgroup2 path ("0::/system.slice/x.service" -> "/system.slice/x.service"). */
function ownV2Path(): string {
  try {
    const line = readFileSync("/proc/self/cgroup", "utf8").split("\n").find((l) => l.startsWith("0::"));
    return line ? line.slice(3) || "/" : "/";
  } catch {
    return "/";
  }
}

/**
 * Was `dir` (a cgroup2 directory) delegated to us? systemd (>= 251) marks the cgroup of a
 * unit with Delegate=yes with trusted.delegate=1 (user.delegate for user managers). Older
 * systemd: a `.service` cgroup (INVOCATION_ID set: we are that service) whose only process
 * is this one, and writable.
 */
export function isDelegated(dir: string, env: NodeJS.ProcessEnv = process.env): boolean {
  if (xattr(dir, "trusted.delegate") === "1" || xattr(dir, "user.delegate") === "1") return true;
  if (!env.INVOCATION_ID || !dir.endsWith(".service")) return false;
  try {
    const procs = readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n").filter(Boolean).map(Number);
    if (procs.some((p) => p !== process.pid)) return false;
    writeFileSync(join(dir, "cgroup.procs"), String(process.pid)); // a no-op move: proves write access
    return true;
  } catch {
    return false;
  }
}

let delegatedBase: string | null | undefined;

/**
 * Where v2 worlds go: our delegated cgroup (the agent moved to its `agent` leaf first), else
 * the cgroup2 root. Decided once per process.
 */
export function v2Base(mount: string): string {
  if (delegatedBase === undefined) {
    delegatedBase = null;
    const own = ownV2Path();
    if (own !== "/") {
      // After the move our own path is <base>/agent: the base is its parent.
      const dir = join(mount, own);
      const base = basename(own) === "agent" && isDelegated(dirname(dir)) ? dirname(dir) : isDelegated(dir) ? dir : null;
      if (base) {
        const leaf = join(base, "agent");
        mkdirSync(leaf, { recursive: true });
        if (dir !== leaf) writeFileSync(join(leaf, "cgroup.procs"), String(process.pid));
        delegatedBase = base;
      }
    }
  }
  return delegatedBase ?? mount;
}

/** The delegated base in use (null: the cgroup2 root; undefined: not decided yet). For status/tests. */
export const delegatedV2Base = (): string | null | undefined => delegatedBase;

interface Resolved {
  memory?: number;
  quota?: number;
  pids: number;
  /** The command cgroup's limits. */
  cmdPids: number;
  cmdMemory?: number;
  owner?: { uid: number; gid: number };
}

/** Hand the command cgroup's cgroup.procs (and the extra ones named) to the commands' owner. */
function handOver(owner: Resolved["owner"], ...procsFiles: string[]): void {
  if (!owner || owner.uid === 0) return;
  for (const f of procsFiles) chownSync(f, owner.uid, owner.gid);
}

function createV2(mount: string, available: Set<string>, worldId: string, l: Resolved): WorldCgroup {
  const warnings: string[] = [];
  const wanted = CONTROLLERS.filter((c) => available.has(c));
  // `mount` is the base: the cgroup2 root or our delegated cgroup (v2Base).
  const base = join(mount, "substrate");
  const enable = (dir: string) => {
    if (wanted.length === 0) return;
    const have = readFileSync(join(dir, "cgroup.subtree_control"), "utf8").split(/\s+/);
    const add = wanted.filter((c) => !have.includes(c));
    if (add.length) write(dir, "cgroup.subtree_control", add.map((c) => `+${c}`).join(" "));
  };
  enable(mount);
  mkdirSync(base, { recursive: true });
  enable(base);
  const dir = join(base, worldId);
  mkdirSync(dir);
  const need = (c: Controller, what: string, f: () => void) => {
    if (!available.has(c)) warnings.push(`cgroups v2: the ${c} controller is not available; ${what} not applied`);
    else f();
  };
  const spawner = join(dir, "spawner");
  const cmds = join(dir, "cmds");
  try {
    if (l.memory !== undefined)
      need("memory", "memory limit", () => {
        write(dir, "memory.max", l.memory!);
        if (existsSync(join(dir, "memory.swap.max"))) write(dir, "memory.swap.max", 0);
      });
    if (l.quota !== undefined) need("cpu", "cpu limit", () => write(dir, "cpu.max", `${l.quota} ${CPU_PERIOD_US}`));
    need("pids", "pids limit", () => write(dir, "pids.max", l.pids));
    // Two leaves (no process ever sits in the world cgroup itself): the world's own
    // processes, and the commands with the caller's limits.
    mkdirSync(spawner);
    mkdirSync(cmds);
    enable(dir);
    if (available.has("pids")) write(cmds, "pids.max", l.cmdPids);
    if (available.has("memory") && l.cmdMemory !== undefined) {
      write(cmds, "memory.max", l.cmdMemory);
      if (existsSync(join(cmds, "memory.swap.max"))) write(cmds, "memory.swap.max", 0);
    }
    handOver(l.owner, join(cmds, "cgroup.procs"), join(dir, "cgroup.procs"));
  } catch (e) {
    for (const d of [cmds, spawner, dir]) {
      try {
        rmdirSync(d);
      } catch {}
    }
    throw e;
  }
  return handle("v2", [dir], warnings, undefined, { enter: [spawner], commands: cmds });
}

function createV1(mounts: Mounts["v1"], worldId: string, l: Resolved): WorldCgroup {
  const warnings: string[] = [];
  const dirs: Partial<Record<Controller, string>> = {};
  const created: string[] = [];
  try {
    for (const c of CONTROLLERS) {
      const mp = mounts[c];
      if (!mp) {
        warnings.push(`cgroups v1: the ${c} controller is not mounted; its limit is not applied`);
        continue;
      }
      // cpu and cpuacct may share one hierarchy: one directory serves both.
      const dir = join(mp, ownV1Path(c), "substrate", worldId);
      if (!created.includes(dir)) {
        mkdirSync(dir, { recursive: true });
        created.push(dir);
      }
      dirs[c] = dir;
    }
    if (l.memory !== undefined && dirs.memory) {
      write(dirs.memory, "memory.limit_in_bytes", l.memory);
      // memsw >= limit_in_bytes is enforced by the kernel, so this comes second.
      if (existsSync(join(dirs.memory, "memory.memsw.limit_in_bytes"))) write(dirs.memory, "memory.memsw.limit_in_bytes", l.memory);
    }
    if (l.quota !== undefined && dirs.cpu) {
      write(dirs.cpu, "cpu.cfs_period_us", CPU_PERIOD_US);
      write(dirs.cpu, "cpu.cfs_quota_us", l.quota);
    }
    if (dirs.pids) {
      write(dirs.pids, "pids.max", l.pids);
      // The commands' own child (issue 18.3): the world's processes stay in the parent.
      const cmds = join(dirs.pids, "cmds");
      mkdirSync(cmds);
      write(cmds, "pids.max", l.cmdPids);
      handOver(l.owner, join(cmds, "cgroup.procs"));
    }
  } catch (e) {
    for (const d of created) {
      try {
        if (existsSync(join(d, "cmds"))) rmdirSync(join(d, "cmds"));
        rmdirSync(d);
      } catch {}
    }
    throw e;
  }
  return handle("v1", created, warnings, dirs, { enter: created, commands: dirs.pids ? join(dirs.pids, "cmds") : undefined });
}

// ---------------------------------------------------------------- the handle

const procsOf = (dir: string): number[] => {
  try {
    return readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n").filter(Boolean).map(Number);
  } catch {
    return [];
  }
};

/** A cgroup dir and every cgroup below it, deepest first (what rmdir needs). */
function treeDepthFirst(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let kids: string[] = [];
    try {
      kids = readdirSync(d, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch {}
    for (const k of kids) walk(join(d, k));
    out.push(d);
  };
  walk(dir);
  return out;
}

/**
 * Remove a world cgroup left behind (by a crashed agent) when nothing runs in it any more:
 * its `spawner`/`cmds` children first. False (and nothing removed) when a process is left.
 */
export function removeEmptyCgroupTree(dir: string): boolean {
  const tree = treeDepthFirst(dir);
  if (tree.some((d) => procsOf(d).length > 0)) return false;
  try {
    for (const d of tree) rmdirSync(d);
    return true;
  } catch {
    return false;
  }
}

function handle(
  mode: "v2" | "v1",
  paths: string[],
  warnings: string[],
  v1?: Partial<Record<Controller, string>>,
  layout: { enter: string[]; commands?: string } = { enter: paths },
): WorldCgroup {
  const memDir = mode === "v2" ? paths[0] : v1?.memory;
  const cpuDir = mode === "v2" ? paths[0] : v1?.cpu;
  const pidsDir = mode === "v2" ? paths[0] : v1?.pids;
  let destroyed = false;
  // Every directory of this world, deepest first (the command/spawner leaves before their parent).
  const allDirs = () => paths.flatMap(treeDepthFirst);
  return {
    mode,
    paths,
    ...(layout.commands ? { commandCgroup: layout.commands } : {}),
    warnings,
    enterArgvPrefix() {
      // `$$` of this sh is the pid that later execs unshare: it is in every hierarchy
      // before any world code runs. Paths are single-quoted (v1 nests under our own cgroup
      // path, which systemd may have given odd characters).
      const script = `${layout.enter.map((p) => `echo $$ > ${shQuote(join(p, "cgroup.procs"))}`).join(" && ")} && exec "$@"`;
      return ["/bin/sh", "-c", script, "sh"];
    },
    async addPid(pid: number) {
      for (const p of layout.enter) writeFileSync(join(p, "cgroup.procs"), String(pid));
    },
    async stats() {
      const s: CgroupStats = {};
      if (memDir) {
        s.memory_bytes = readNum(join(memDir, mode === "v2" ? "memory.current" : "memory.usage_in_bytes"));
        s.oom_kills = mode === "v2" ? keyed(join(memDir, "memory.events"), "oom_kill") : keyed(join(memDir, "memory.oom_control"), "oom_kill");
      }
      if (pidsDir) s.pids = readNum(join(pidsDir, "pids.current"));
      if (cpuDir) {
        s.nr_throttled = keyed(join(cpuDir, "cpu.stat"), "nr_throttled");
        s.throttled_usec =
          mode === "v2"
            ? keyed(join(cpuDir, "cpu.stat"), "throttled_usec")
            : ((n) => (n === undefined ? undefined : Math.round(n / 1000)))(keyed(join(cpuDir, "cpu.stat"), "throttled_time"));
      }
      for (const k of Object.keys(s) as (keyof CgroupStats)[]) if (s[k] === undefined) delete s[k];
      return s;
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      // Only the directories this handle created are touched: everything in them was put
      // there by us (enterArgvPrefix/addPid) or forked from it.
      // (v2's cgroup.kill takes the whole subtree: the spawner and the command leaves.)
      const killFile = mode === "v2" ? join(paths[0], "cgroup.kill") : undefined;
      const deadline = Date.now() + 5000;
      for (;;) {
        const left = [...new Set(allDirs().flatMap(procsOf))];
        if (left.length === 0) break;
        if (killFile && existsSync(killFile)) {
          try {
            writeFileSync(killFile, "1");
          } catch {}
        } else {
          // v1 has no cgroup.kill: SIGKILL in a loop until nothing is left (a fork racing
          // the read is caught by the next round; pids.max bounds how many there can be).
          for (const pid of left) {
            try {
              process.kill(pid, "SIGKILL");
            } catch {}
          }
        }
        if (Date.now() > deadline) throw new Error(`cgroups: processes ${left.join(",")} survived SIGKILL in ${paths.join(", ")}`);
        await Bun.sleep(10);
      }
      // rmdir can race the exit of the last task (EBUSY for a moment).
      for (const p of allDirs()) {
        for (let i = 0; ; i++) {
          try {
            rmdirSync(p);
            break;
          } catch (e) {
            const code = (e as NodeJS.ErrnoException).code;
            if (code === "ENOENT") break;
            if (code !== "EBUSY" || i >= 100) throw e;
            await Bun.sleep(10);
          }
        }
      }
    },
  };
}

/** Remove the shared `substrate/` parents when no world is left (agent shutdown, tests). */
export function removeCgroupBaseIfEmpty(): void {
  const m = readMounts();
  const bases = new Set<string>();
  if (m.v2) bases.add(join(m.v2, "substrate"));
  if (delegatedBase) bases.add(join(delegatedBase, "substrate"));
  for (const c of CONTROLLERS) if (m.v1[c]) bases.add(join(m.v1[c]!, ownV1Path(c), "substrate"));
  for (const b of bases) {
    try {
      rmdirSync(b);
    } catch {}
  }
}

// ---------------------------------------------------------------- OOM

export interface OomGuard {
  /** "spawner": this process is at -1000 (needs CAP_SYS_RESOURCE), commands at 0.
   *  "commands": no CAP_SYS_RESOURCE; this process keeps its value, commands get +500 above it.
   *  "none": /proc/self/oom_score_adj could not be opened (reason says why). */
  applied: "spawner" | "commands" | "none";
  reason?: string;
  /** oom_score_adj of this process / of the commands it spawns through `unprotected`. */
  self: number;
  commands: number;
  /** The open oom_score_adj fd (kept across the spawner's re-exec). */
  fd?: number;
  /**
   * Run `spawn` (a synchronous Bun.spawn call) with this process's oom_score_adj set to the
   * commands' value, so the child inherits it; the protection is back before it returns.
   */
  unprotected<T>(spawn: () => T): T;
}

/**
 * Make the OOM killer pick commands, never this process (the world spawner): a memory-limited
 * world's OOM kill then hits the command that used the memory, and the world survives it.
 *
 * Traps:
 * - oom_score_adj is INHERITED at fork. A spawner at -1000 would fork commands at -1000, and
 *   when every task in a memory cgroup is at -1000 the OOM killer finds no victim and the
 *   cgroup livelocks at its limit. So commands must be spawned through `unprotected()`, which
 *   sets the commands' value right before the (synchronous) fork and restores it right after.
 * - It writes through an fd opened HERE: after Landlock, /proc/self/oom_score_adj can no
 *   longer be opened for writing (already-open fds keep working).
 * - Lowering needs CAP_SYS_RESOURCE, except down to `oom_score_adj_min`, which the first
 *   privileged write sets. So: with the capability, -1000 once (min = -1000) and then free
 *   toggling between -1000 and 0 even after the capabilities are dropped. Without it (a
 *   container, or this CI host whose bounding set lacks CAP_SYS_RESOURCE) the spawner keeps its
 *   value and commands are RAISED by 500, which any process may do. Either way commands are
 *   the preferred victims. They cannot lower themselves: Landlock forbids writes to /proc.
 * - Bun opens files O_CLOEXEC, so no command inherits the fd.
 */
export function protectFromOom(): OomGuard {
  let fd: number;
  let current: number;
  try {
    fd = openSync("/proc/self/oom_score_adj", "r+");
    current = Number(readFileSync("/proc/self/oom_score_adj", "utf8").trim());
  } catch (e) {
    return { applied: "none", reason: `oom_score_adj: ${errMsg(e)}`, self: 0, commands: 0, unprotected: (f) => f() };
  }
  let self = -1000;
  let commands = 0;
  let applied: OomGuard["applied"] = "spawner";
  let reason: string | undefined;
  try {
    writeSync(fd, "-1000");
  } catch (e) {
    self = current;
    commands = Math.min(1000, current + 500);
    applied = "commands";
    reason = `cannot lower this process's oom_score_adj (${errMsg(e)}; CAP_SYS_RESOURCE missing): commands are raised to ${commands} instead`;
  }
  return oomGuardFromFd(fd, { applied, ...(reason ? { reason } : {}), self, commands });
}

/**
 * The guard over an open /proc/<self>/oom_score_adj fd. Issue 14.1: the spawner re-execs itself
 * after hardening (spawner.ts) and may no longer open the file then (Landlock, non-dumpable, no
 * CAP_SYS_RESOURCE): it keeps the fd across execve and rebuilds the guard here. Lowering back to
 * `self` needs no capability once a privileged write set oom_score_adj_min that low.
 */
export function oomGuardFromFd(fd: number, o: Pick<OomGuard, "applied" | "reason" | "self" | "commands">): OomGuard {
  const set = (v: number) => writeSync(fd, String(v));
  return {
    ...o,
    fd,
    unprotected<T>(spawn: () => T): T {
      set(o.commands);
      try {
        return spawn();
      } finally {
        set(o.self);
      }
    },
  };
}

// ---------------------------------------------------------------- the command cgroup, spawner side (issue 18.3)

/**
 * How the spawner forks commands into the world's command cgroup (WorldCgroup.commandCgroup),
 * so each command is in it from its first instruction and everything it forks too:
 *
 * - v2: Bun.spawn's `cgroup` option with the directory's fd (clone3 CLONE_INTO_CGROUP: no file
 *   is opened at fork time, so Landlock does not get in the way).
 * - v1: CLONE_INTO_CGROUP does not exist there (Bun would then open `cgroup.procs` in the child,
 *   which Landlock refuses). Instead the spawner's forking thread steps into the command cgroup
 *   for the (synchronous) fork: one write of its tid to `<cmds>/tasks` before, one to
 *   `<world>/tasks` after — v1 moves single threads, so Bun's other threads never leave the
 *   world cgroup and keep their headroom. The fds are opened by stage 1 as root, before
 *   Landlock; the kernel checks a migration against the opener's credentials.
 *
 * Stage 1 opens them (`openCommandCgroup`), they cross the re-exec like the oom fd (`fds`),
 * stage 2 rebuilds the guard (`commandCgroupFromFds`). `spawn` falls back to the spawner's own
 * cgroup, once and said once on stderr, when the kernel refuses the join for a reason that will
 * not go away (EACCES, EPERM, ENOSYS, EBADF, EINVAL...): a command must still run. EAGAIN is NOT
 * such a reason: the commands are at their pids limit (a fork bomb), and the new command must
 * fail rather than eat the spawner's headroom.
 */
export interface CommandCgroup {
  mode: "v2" | "v1" | "none";
  /** v2: [dir fd]; v1: [<cmds>/tasks fd, <world>/tasks fd]; none: []. */
  fds: number[];
  spawn<T>(f: (opt: { cgroup?: number }) => T): T;
}

const PERMANENT = ["EACCES", "EPERM", "ENOSYS", "EBADF", "EINVAL", "ENOTDIR", "EOPNOTSUPP", "ENOENT", "ESRCH"];

export function commandCgroupFromFds(
  mode: CommandCgroup["mode"] | undefined,
  fds: number[] = [],
  log: (msg: string) => void = (m) => process.stderr.write(`${m}\n`),
): CommandCgroup {
  let usable = mode === "v2" || mode === "v1";
  const giveUp = (e: unknown): boolean => {
    const code = (e as NodeJS.ErrnoException).code ?? "";
    if (!PERMANENT.includes(code)) return false;
    usable = false;
    log(`cgroups: commands cannot join the world's command cgroup (${code}); they share the world's limit from now on`);
    return true;
  };
  return {
    mode: mode ?? "none",
    fds,
    spawn(f) {
      if (!usable) return f({});
      if (mode === "v2") {
        try {
          return f({ cgroup: fds[0] });
        } catch (e) {
          if (giveUp(e)) return f({});
          throw e;
        }
      }
      // v1: this (the JS, main) thread's tid is the pid; written in the writer's pid namespace.
      try {
        writeSync(fds[0]!, String(process.pid));
      } catch (e) {
        if (giveUp(e)) return f({});
        throw e;
      }
      try {
        return f({});
      } finally {
        writeSync(fds[1]!, String(process.pid));
      }
    },
  };
}

/**
 * Stage 1: open the command cgroup `dir` (WorldBootConfig.commandCgroup) for stage 2. v1 is
 * told apart by its `tasks` file. Undefined, said on stderr, when it cannot be opened.
 */
export function openCommandCgroup(dir: string | undefined): { mode: "v2" | "v1"; fds: number[] } | undefined {
  if (!dir) return undefined;
  try {
    if (existsSync(join(dir, "tasks"))) return { mode: "v1", fds: [openSync(join(dir, "tasks"), "w"), openSync(join(dirname(dir), "tasks"), "w")] };
    return { mode: "v2", fds: [openSync(dir, "r")] };
  } catch (e) {
    process.stderr.write(`cgroups: cannot open the command cgroup ${dir}: ${errMsg(e)}; commands share the world's limit\n`);
    return undefined;
  }
}
