/**
 * Issue 13: who is calling. A root agent serves every request as the peer of its Unix socket
 * (SO_PEERCRED, taken by the kernel at connect time — never from the request body): the world
 * it runs in belongs to that uid, its commands run with that uid, primary and supplementary
 * groups and passwd entry, and the project must be writable by that uid on the host.
 *
 * Traps:
 * - The passwd/group lookups go through `getent` (NSS: LDAP/SSSD users too), cached per uid;
 *   a uid without a passwd entry is refused (no home, no name: nothing to build a world from).
 * - "Writable by the caller" is decided by the kernel, not re-implemented here (ACLs, read-only
 *   mounts, root-squashed NFS): `setpriv` runs `test -w` with the caller's exact credentials.
 *   Cached briefly per (uid, dir), so it costs one spawn per world, not per execute.
 */
import type { Socket } from "node:net";
import type { Caller } from "../src/contract/world.ts";
import { ApiError } from "../src/api/service.ts";
import { peerCred, type PeerCred } from "../src/sys/peercred.ts";

const PEER = Symbol.for("substrate.peer");

/** Record the peer of a freshly accepted connection (server.ts). */
export function notePeer(sock: Socket): void {
  try {
    const cred = peerCred(sock);
    if (cred) (sock as unknown as Record<symbol, PeerCred>)[PEER] = cred;
  } catch {
    // not a Unix socket (tests over a socketpair, TCP bridges): no peer, treated as the agent's own user
  }
}

export function peerOf(sock: unknown): PeerCred | undefined {
  return sock ? (sock as Record<symbol, PeerCred | undefined>)[PEER] : undefined;
}

const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
function getent(db: string, key: string): string | undefined {
  const r = Bun.spawnSync(["getent", db, key], { env: { PATH }, stdout: "pipe", stderr: "ignore" });
  return r.exitCode === 0 ? r.stdout.toString().trim() : undefined;
}

const CACHE_MS = 60_000;
const callers = new Map<number, { at: number; caller: Caller }>();

/** The Caller for a uid: passwd entry + primary and supplementary groups. */
export function resolveCaller(uid: number, gid?: number): Caller {
  const hit = callers.get(uid);
  if (hit && Date.now() - hit.at < CACHE_MS && (gid === undefined || hit.caller.gid === gid)) return hit.caller;
  const pw = getent("passwd", String(uid))?.split("\n")[0]?.split(":");
  if (!pw || pw.length < 7)
    throw new ApiError("forbidden", `uid ${uid} has no passwd entry on the agent's machine`, "run the client as a user with an account (getent passwd UID)");
  const [name, , , pwGid, , home, shell] = pw as [string, string, string, string, string, string, string];
  const primary = gid ?? Number(pwGid);
  const extra = (getent("initgroups", name) ?? "").split(/\s+/).slice(1).map(Number).filter((n) => Number.isInteger(n) && n >= 0);
  const caller: Caller = {
    uid,
    gid: primary,
    groups: [...new Set([primary, ...extra])],
    name,
    home: home.startsWith("/") ? home : "/",
    shell: shell || "/bin/sh",
  };
  callers.set(uid, { at: Date.now(), caller });
  return caller;
}

/** The agent's own identity: the caller when a request has no peer (in-process use, tests). */
export function selfCaller(): Caller {
  return resolveCaller(process.getuid?.() ?? 0, process.getgid?.());
}

const writable = new Map<string, number>();
/**
 * 403 unless `dir` is a directory the caller can write and enter on the host, checked with the
 * caller's own credentials. uid 0 may write anywhere (it is root on the host already).
 */
export function assertProjectWritable(caller: Caller, dir: string): void {
  if (caller.uid === 0 || (process.getuid?.() ?? 0) !== 0) return; // a rootless agent runs as its only caller
  const key = `${caller.uid}:${dir}`;
  const at = writable.get(key);
  if (at !== undefined && Date.now() - at < 10_000) return;
  const r = Bun.spawnSync(
    ["setpriv", `--reuid=${caller.uid}`, `--regid=${caller.gid}`, `--groups=${caller.groups.join(",")}`, "--", "/usr/bin/test", "-w", dir, "-a", "-x", dir],
    { env: { PATH }, stdout: "ignore", stderr: "pipe" },
  );
  if (r.exitCode !== 0)
    throw new ApiError(
      "forbidden",
      `project directory ${dir} is not writable by ${caller.name} (uid ${caller.uid})`,
      "run the command from a project directory you own (or can write), e.g. inside your home",
    );
  writable.set(key, Date.now());
}
