/**
 * User namespace for a world: root in the world is NOT root on the host.
 *
 * Mapping (decided here, see docs/WORLD.md "Privilege reduction"):
 *   world uid 0        -> the project owner's host uid (when that is not root), so the
 *                         world's root can write the project and files it creates belong
 *                         to the user on the host;
 *   world uids 1..N-1  -> a subordinate range (/etc/subuid entry of the agent's user,
 *                         default 100000:65536), so `apt`/`nobody`-style users exist;
 *   same for gids.
 * When the project owner IS root, world root maps to the start of the subordinate range
 * and the project is read-only to it (reported as a warning).
 *
 * How (host side, before spawning the world):
 *   const map = worldIdMap(projectDir);
 *   const h = prepareIdMapHelpers(`/run/substrate/userns/${worldId}`, map);
 *   Bun.spawn([...cgroupPrefix, "unshare", ...h.unshareArgs, "--mount", ..., "--", ...],
 *             { env: { ...env, PATH: h.env.PATH } });      // h.remove() at teardown
 * See prepareIdMapHelpers for why the maps go through unshare's newuidmap protocol.
 *
 * Consequences for the other layers (all inside the world's user namespace):
 * - overlayfs needs the `userxattr` option (kernel >= 5.11): trusted.* xattrs are not
 *   available, so whiteouts/opaque dirs use user.overlay.*; diff code must read those.
 * - mknod is refused: /dev nodes must be bind mounts of the host's, not mknod'ed.
 * - Host files owned by unmapped ids show as nobody/nogroup (65534) and are read-only.
 * - Capabilities held by world root only apply to objects owned by the world's user
 *   namespace: it can mount tmpfs/proc in its own mount namespace, never touch the host's.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface UserNamespaceSupport {
  available: boolean;
  /** Which sysctl/LSM blocks it, when not available. */
  reason?: string;
  /** What the administrator can do about it. */
  fix?: string;
  sysctls: {
    max_user_namespaces: number | null;
    /** Debian/Ubuntu patch; only restricts UNPRIVILEGED users (the agent is root). */
    unprivileged_userns_clone: number | null;
    /** Ubuntu >= 23.10 AppArmor; only restricts unprivileged, unconfined processes. */
    apparmor_restrict_unprivileged_userns: number | null;
  };
}

const readInt = (p: string): number | null => {
  try {
    return Number(readFileSync(p, "utf8").trim());
  } catch {
    return null;
  }
};

/**
 * Can this process create a user namespace with an id map? Reads the knobs, then proves it
 * with `unshare --user --map-root-user true` (a few ms).
 */
export function userNamespaceSupport(): UserNamespaceSupport {
  const sysctls = {
    max_user_namespaces: readInt("/proc/sys/user/max_user_namespaces"),
    unprivileged_userns_clone: readInt("/proc/sys/kernel/unprivileged_userns_clone"),
    apparmor_restrict_unprivileged_userns: readInt("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
  };
  const root = process.getuid?.() === 0;
  if (!existsSync("/proc/self/ns/user")) {
    return { available: false, reason: "kernel built without CONFIG_USER_NS", fix: "use a kernel with user namespaces", sysctls };
  }
  if (sysctls.max_user_namespaces === 0) {
    return {
      available: false,
      reason: "sysctl user.max_user_namespaces is 0",
      fix: "sysctl -w user.max_user_namespaces=15000 (persist it in /etc/sysctl.d/)",
      sysctls,
    };
  }
  if (!root && sysctls.unprivileged_userns_clone === 0) {
    return {
      available: false,
      reason: "sysctl kernel.unprivileged_userns_clone is 0 (unprivileged user namespaces disabled)",
      fix: "run the agent as root, or sysctl -w kernel.unprivileged_userns_clone=1",
      sysctls,
    };
  }
  const probe = Bun.spawnSync(["unshare", "--user", "--map-root-user", "true"], { stdout: "ignore", stderr: "pipe" });
  if (probe.exitCode !== 0) {
    const err = probe.stderr.toString().trim();
    if (!root && sysctls.apparmor_restrict_unprivileged_userns === 1) {
      return {
        available: false,
        reason: "AppArmor: kernel.apparmor_restrict_unprivileged_userns=1 denies user namespaces to unconfined unprivileged programs",
        fix:
          "run the agent as root (systemd unit), or give the agent binary an AppArmor profile with `userns,` " +
          "(/etc/apparmor.d/substrate-world-agent), or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
        sysctls,
      };
    }
    return {
      available: false,
      reason: `unshare --user failed: ${err || `exit ${probe.exitCode}`} (a seccomp/LSM policy of the agent's own sandbox?)`,
      fix: "run the agent on the host or VM directly (not inside a container that forbids user namespaces)",
      sysctls,
    };
  }
  return { available: true, sysctls };
}

export interface IdRange {
  start: number;
  count: number;
}

/** First range for `user` (name or numeric id) in /etc/subuid-style `file`, or null. */
export function subordinateRange(user: string, file = "/etc/subuid"): IdRange | null {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return null;
  }
  for (const line of text.split("\n")) {
    const [name, start, count] = line.trim().split(":");
    if (name === user && start !== undefined && count !== undefined) {
      const r = { start: Number(start), count: Number(count) };
      if (Number.isInteger(r.start) && Number.isInteger(r.count) && r.count > 1) return r;
    }
  }
  return null;
}

/** Used when /etc/subuid has no entry for root (the usual first range of useradd). */
export const DEFAULT_SUBORDINATE: IdRange = { start: 100000, count: 65536 };

/** One line of /proc/<pid>/uid_map: inside-id outside-id count. */
export interface IdMapLine {
  inside: number;
  outside: number;
  count: number;
}
export interface IdMap {
  uid: IdMapLine[];
  gid: IdMapLine[];
  /** Host uid/gid that world root is. */
  rootUid: number;
  rootGid: number;
  warnings: string[];
}

/**
 * The map for a world whose project is `projectDir`. Subordinate ranges come from
 * /etc/subuid and /etc/subgid for "root" (or DEFAULT_SUBORDINATE when there is none).
 */
export function worldIdMap(
  projectDir: string,
  opts: { subuid?: IdRange; subgid?: IdRange; subuidFile?: string; subgidFile?: string } = {},
): IdMap {
  const st = statSync(projectDir);
  const warnings: string[] = [];
  const pick = (file: string | undefined, def: string): IdRange =>
    subordinateRange("root", file ?? def) ?? subordinateRange("0", file ?? def) ?? DEFAULT_SUBORDINATE;
  const subuid = opts.subuid ?? pick(opts.subuidFile, "/etc/subuid");
  const subgid = opts.subgid ?? pick(opts.subgidFile, "/etc/subgid");
  const lines = (owner: number, sub: IdRange): IdMapLine[] => {
    if (owner !== 0 && (owner < sub.start || owner >= sub.start + sub.count)) {
      return [
        { inside: 0, outside: owner, count: 1 },
        { inside: 1, outside: sub.start, count: sub.count - 1 },
      ];
    }
    return [{ inside: 0, outside: sub.start, count: sub.count }];
  };
  if (st.uid === 0) {
    warnings.push(
      `userns: ${projectDir} is owned by host root, which is not mapped into the world: the project is read-only ` +
        "to world root (chown the project to a regular user, or run without a user namespace)",
    );
  }
  const uid = lines(st.uid, subuid);
  const gid = lines(st.gid, subgid);
  return { uid, gid, rootUid: uid[0].outside, rootGid: gid[0].outside, warnings };
}

const fmt = (l: IdMapLine[]) => l.map((x) => `${x.inside} ${x.outside} ${x.count}`).join("\\n");

export interface IdMapHelpers {
  /** Put first on unshare's PATH (e.g. `env: { PATH: helpers.env.PATH }` for Bun.spawn). */
  env: { PATH: string };
  /** Flags for util-linux unshare (2.38+): user namespace, maps, and become root in it. */
  unshareArgs: string[];
  /** Remove the helper directory (world teardown). */
  remove(): void;
}

/**
 * Write the two tiny id-map helpers for one world into `dir` and return the unshare flags.
 *
 * Why helpers: util-linux unshare's `--map-users/--map-groups` run `newuidmap <pid> <in> <out>
 * <count>` / `newgidmap ...` (found on PATH) while unshare waits between unshare(2) and exec.
 * Only that window works: a process that execs while its uid is still unmapped loses its
 * capabilities in the new namespace (not "root" there), and after exec it cannot setuid(0).
 * 2.38 accepts a single range per option, and shadow's newuidmap only maps ranges listed for
 * root in /etc/subuid. As root we write the maps directly, so our `newuidmap` ignores the
 * range arguments and writes the world's full map (project owner + subordinate range) to
 * /proc/<pid>/uid_map. `--setuid 0 --setgid 0` then make unshare root of the new namespace
 * before it execs, so world root keeps its (namespaced) capabilities.
 */
export function prepareIdMapHelpers(dir: string, map: IdMap): IdMapHelpers {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const script = (file: "uid_map" | "gid_map", lines: IdMapLine[]) =>
    `#!/bin/sh\n# substrate: world id map (util-linux unshare newuidmap protocol; argv ranges ignored)\n` +
    `printf '${fmt(lines)}\\n' > "/proc/$1/${file}"\n`;
  writeFileSync(join(dir, "newuidmap"), script("uid_map", map.uid), { mode: 0o700 });
  writeFileSync(join(dir, "newgidmap"), script("gid_map", map.gid), { mode: 0o700 });
  return {
    env: { PATH: `${dir}:/usr/sbin:/usr/bin:/sbin:/bin` },
    unshareArgs: [
      "--user",
      `--map-users=${map.rootUid},0,1`,
      `--map-groups=${map.rootGid},0,1`,
      "--setuid",
      "0",
      "--setgid",
      "0",
    ],
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
