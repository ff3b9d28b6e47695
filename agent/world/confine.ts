/**
 * Host-side half of a world's resource and privilege setup, one call before the world's
 * `unshare` is spawned (the spawner-side half is `hardenSelf`, after pivot_root):
 *
 *   const c = await confineWorld({ worldId, limits: spec.limits, projectDir, userns: false, helperDir });
 *   Bun.spawn([...c.argvPrefix, "unshare", ...c.unshareArgs, "--mount", "--uts", ..., "--", ...],
 *             { env: { ...env, ...c.env } });
 *   ...
 *   await c.destroy();   // after the world's processes are gone (World.destroy)
 *
 * - cgroup: the world's first process enters it from its first instruction (argvPrefix).
 *   Where no cgroup backend works: one warning, no limits (spec: graceful degradation).
 * - user namespace (opt-in): world root = the project owner (see userns.ts). The caller must
 *   then make every host path the spawner touches reachable by `userns.rootUid` (the world dir
 *   and its root mount point, the control socket dir: chown them), mount the overlay with
 *   `userxattr`, and bind (never mknod) device nodes. When unavailable: one warning, no userns.
 */
import type { CgroupLimits, WorldCgroup } from "./cgroups.ts";
import { createWorldCgroup } from "./cgroups.ts";
import { prepareIdMapHelpers, userNamespaceSupport, worldIdMap, type IdMapHelpers } from "./userns.ts";

export interface ConfineOptions {
  worldId: string;
  /** The world's limits (headroom for its own processes included). */
  limits: CgroupLimits;
  /** Issue 18.3: the commands' limits (the caller's, no headroom): the command cgroup holds them. */
  commandLimits?: Pick<CgroupLimits, "pids" | "memory">;
  /** Issue 18.3: host ids the commands run as (a non-root caller): they fork into the command cgroup. */
  caller?: { uid: number; gid: number };
  projectDir: string;
  /** Use a user namespace when the kernel allows it. */
  userns: boolean;
  /** Where the id-map helpers for this world go (e.g. `<world dir>/idmap`); needed with userns. */
  helperDir?: string;
}

export interface WorldConfinement {
  /** argv before "unshare" (enters the cgroup, then execs). Empty without a cgroup. */
  argvPrefix: string[];
  /** unshare flags to add (user namespace + id maps). Empty without a user namespace. */
  unshareArgs: string[];
  /** Env entries for the unshare process (PATH with the id-map helpers first). */
  env: Record<string, string>;
  cgroup: WorldCgroup | null;
  /** Issue 18.3: the cgroup commands are forked into (WorldBootConfig.commandCgroup); undefined without one. */
  commandCgroup?: string;
  /** Host ids of world root, when a user namespace is used. */
  userns: { rootUid: number; rootGid: number } | null;
  /** One line per layer that degraded or is partial; empty when all applied. */
  warnings: string[];
  /** Kill what is left in the cgroup, remove it and the id-map helpers. Idempotent. */
  destroy(): Promise<void>;
}

export async function confineWorld(o: ConfineOptions): Promise<WorldConfinement> {
  const warnings: string[] = [];
  let helpers: IdMapHelpers | undefined;
  let userns: WorldConfinement["userns"] = null;
  if (o.userns) {
    const support = userNamespaceSupport();
    if (!support.available) {
      warnings.push(`userns: not available (${support.reason}); world root is host root with capabilities dropped. Fix: ${support.fix}`);
    } else if (!o.helperDir) {
      throw new Error("confineWorld: helperDir is required when userns is requested");
    } else {
      const map = worldIdMap(o.projectDir);
      warnings.push(...map.warnings);
      helpers = prepareIdMapHelpers(o.helperDir, map);
      userns = { rootUid: map.rootUid, rootGid: map.rootGid };
    }
  }

  // The commands' host ids: world root under a user namespace, else the caller's.
  const commandOwner = userns ? { uid: userns.rootUid, gid: userns.rootGid } : o.caller;
  let cg: Awaited<ReturnType<typeof createWorldCgroup>>;
  try {
    cg = await createWorldCgroup(o.worldId, o.limits, { commands: o.commandLimits, ...(commandOwner ? { commandOwner } : {}) });
  } catch (e) {
    helpers?.remove();
    throw e;
  }
  let cgroup: WorldCgroup | null = null;
  if ("degraded" in cg) warnings.push(cg.degraded);
  else {
    cgroup = cg;
    warnings.push(...cg.warnings);
  }

  let destroyed: Promise<void> | undefined;
  return {
    argvPrefix: cgroup?.enterArgvPrefix() ?? [],
    unshareArgs: helpers?.unshareArgs ?? [],
    env: helpers ? { PATH: helpers.env.PATH } : {},
    cgroup,
    ...(cgroup?.commandCgroup ? { commandCgroup: cgroup.commandCgroup } : {}),
    userns,
    warnings,
    destroy() {
      destroyed ??= (async () => {
        helpers?.remove();
        await cgroup?.destroy();
      })();
      return destroyed;
    },
  };
}
