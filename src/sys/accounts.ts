/**
 * Typed wrapper for the shadow-utils account programs `groupadd` and `usermod` (plus reads
 * of /etc/group, which is what `getent group` would answer for local groups). Used by
 * `substrate world warm` to create the `substrate` group and add the invoking user.
 *
 * Trap: a new group membership only reaches processes started by a NEW login; the user's
 * running shells keep their old groups (`newgrp substrate` or log out and in).
 */
import { readFileSync } from "node:fs";

export class AccountsError extends Error {
  override name = "AccountsError";
  constructor(
    readonly argv: string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`${argv.join(" ")} failed${exitCode === null ? "" : ` (exit ${exitCode})`}: ${stderr.trim() || "no output"}`);
  }
}

const SBIN = "/usr/sbin:/sbin:/usr/bin:/bin";

function run(argv: string[]): void {
  const r = Bun.spawnSync(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, PATH: `${SBIN}:${process.env.PATH ?? ""}` } });
  if (r.exitCode !== 0) throw new AccountsError(argv, r.exitCode, r.stderr.toString());
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

export function readGroup(name: string, file = "/etc/group"): GroupEntry | null {
  try {
    for (const line of readFileSync(file, "utf8").split("\n")) {
      const [n, , gid, members] = line.split(":");
      if (n === name && gid !== undefined) return { name: n, gid: Number(gid), members: (members ?? "").split(",").filter(Boolean) };
    }
  } catch {}
  return null;
}

/** The primary gid of a user from /etc/passwd (membership through the primary group counts too). */
export function userEntry(user: string, file = "/etc/passwd"): { uid: number; gid: number; home: string } | null {
  try {
    for (const line of readFileSync(file, "utf8").split("\n")) {
      const f = line.split(":");
      if (f[0] === user && f[2] !== undefined) return { uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? "" };
    }
  } catch {}
  return null;
}

export function isMember(user: string, group: string): boolean {
  const g = readGroup(group);
  if (!g) return false;
  return g.members.includes(user) || userEntry(user)?.gid === g.gid;
}

export function groupAddSystem(name: string): void {
  run(["groupadd", "--system", name]);
}

export function addUserToGroup(user: string, group: string): void {
  run(["usermod", "-aG", group, user]);
}

/** systemd-logind keeps lingering users as files in this directory (no loginctl needed). */
export const lingerEnabled = (user: string): boolean => {
  try {
    readFileSync(`/var/lib/systemd/linger/${user}`);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EISDIR";
  }
};
