/**
 * Paths another user can execute (issue 18 item 1b).
 *
 * Some tests hand the checkout's binaries to a different uid: a throwaway user (runuser,
 * setpriv), or world root in a user namespace (a mapped host uid). That uid must traverse
 * every directory above the binary. A clone under a 0700 home (the Debian 12+ default for
 * new users) or in a `mktemp -d` dir is not traversable by others, and those tests failed
 * with EACCES.
 *
 * `runnable(path)` returns `path` itself when others can reach it. Otherwise it returns the
 * same relative path inside a MIRROR of the checkout: a temp dir of this test process in a
 * world-traversable place (TMPDIR, /tmp or /var/tmp, whichever others can reach), made once,
 * with directories created fresh (0755) and files hard-linked (same file system: instant,
 * no bytes copied) or copied (another file system). The checkout's own modes are never
 * changed. The mirror is removed when the test process exits.
 *
 * Where no such place exists, `runnable` throws at once with the reason (the suite stops
 * saying why instead of failing later with EACCES).
 */
import { accessSync, chmodSync, constants, copyFileSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, realpathSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve, sep } from "node:path";

export const ROOT = resolve(import.meta.dir, "../..");

/** Entries of the checkout a mirror leaves out (history, build scratch). dist/ is filtered below. */
const SKIP = new Set([".git", ".tmp"]);

/**
 * Can a process of another (non-root, unrelated) uid reach `path`: every directory above it
 * searchable by "other", and the file itself readable (and executable when `exec`) by "other".
 */
export function othersCanReach(path: string, exec = false): boolean {
  let p: string;
  try {
    p = realpathSync(path);
  } catch {
    return false;
  }
  const need = exec ? 0o005 : 0o004;
  try {
    const st = statSync(p);
    if ((st.mode & (st.isDirectory() ? 0o001 : need)) !== (st.isDirectory() ? 0o001 : need)) return false;
  } catch {
    return false;
  }
  for (let d = dirname(p); ; d = dirname(d)) {
    try {
      if ((statSync(d).mode & 0o001) === 0) return false;
    } catch {
      return false;
    }
    if (d === "/") return true;
  }
}

/** Why no mirror can be made: null when it can. */
function traversableBase(): string | { reason: string } {
  const candidates = [...new Set([tmpdir(), "/tmp", "/var/tmp"])];
  for (const c of candidates) {
    try {
      accessSync(c, constants.W_OK | constants.X_OK);
    } catch {
      continue;
    }
    if (othersCanReach(c)) return c;
  }
  return {
    reason:
      `the checkout ${ROOT} is not traversable by other users (tests run binaries as a throwaway user and as world root ` +
      `in a user namespace), and none of ${candidates.join(", ")} is a writable directory other users can traverse to put ` +
      `a copy in. Fix: clone into a traversable directory, or set TMPDIR to a directory with o+x on every level.`,
  };
}

let mirror: string | undefined;

/** Hard link (or copy across file systems) `src` tree to `dst`; directories are made 0755. */
function mirrorTree(src: string, dst: string, skip: (rel: string) => boolean, rel = ""): void {
  mkdirSync(dst, { recursive: true });
  chmodSync(dst, 0o755);
  for (const name of readdirSync(src)) {
    const r = rel ? `${rel}/${name}` : name;
    if (skip(r)) continue;
    const s = join(src, name);
    const d = join(dst, name);
    const st = lstatSync(s);
    if (st.isDirectory()) mirrorTree(s, d, skip, r);
    else if (st.isSymbolicLink()) symlinkSync(readlinkSync(s), d);
    else if (st.isFile()) {
      try {
        linkSync(s, d);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== "EXDEV" && code !== "EPERM") throw e;
        copyFileSync(s, d);
        chmodSync(d, st.mode & 0o7777);
      }
    }
  }
}

/**
 * bun test emits neither "exit" nor "beforeExit", so the removal is a tiny watcher: `sh`
 * reading a pipe whose only writer is this process (Bun's pipes are close-on-exec, so no
 * child inherits it). When this process ends, however it ends, the pipe closes and the
 * mirror goes.
 */
const watchers: unknown[] = [];
function removeWhenWeExit(dir: string): void {
  const w = Bun.spawn(["/bin/sh", "-c", 'cat >/dev/null; exec rm -rf -- "$0"', dir], { stdin: "pipe", stdout: "ignore", stderr: "ignore", cwd: "/" });
  w.unref();
  watchers.push(w); // keeps the pipe's write end open for our whole life
}

/** The mirror's root, made on first use (this test process). */
function mirrorRoot(): string {
  if (mirror) return mirror;
  const base = traversableBase();
  if (typeof base !== "string") throw new Error(`tests: ${base.reason}`);
  const m = mkdtempSync(join(base, "substrate-runnable-"));
  removeWhenWeExit(m);
  const arch = process.arch === "arm64" ? "arm64" : "x64";
  // dist/ holds cross builds too (hundreds of MB): only this machine's pair and their stamps.
  const keepDist = (name: string) => name.startsWith("substrate-linux-" + arch) || name.startsWith("substrate-world-agent-linux-" + arch);
  mirrorTree(ROOT, m, (r) => SKIP.has(r) || (r.startsWith("dist/") && !keepDist(r.slice(5))));
  mirror = m;
  return m;
}

/**
 * `path` (absolute) as a path another uid can run or read: itself when reachable, else its
 * twin in the mirror. A path outside the checkout that others cannot reach (a bun installed
 * under a 0700 home) is copied into the mirror's `.outside/`.
 */
export function runnable(path: string, exec = true): string {
  const abs = resolve(path);
  if (othersCanReach(abs, exec)) return abs;
  const real = realpathSync(abs);
  const rel = relative(realpathSync(ROOT), real);
  const m = mirrorRoot();
  if (!rel.startsWith(".." + sep) && rel !== "..") {
    const twin = join(m, rel);
    if (!othersCanReach(twin, exec))
      throw new Error(`tests: ${twin} (a mirror of ${real}) is not ${exec ? "executable" : "readable"} by other users: its mode is ${(statSync(real).mode & 0o777).toString(8)} in the checkout`);
    return twin;
  }
  const twin = join(m, ".outside", real);
  mkdirSync(dirname(twin), { recursive: true });
  for (let d = dirname(twin); d.length > m.length; d = dirname(d)) chmodSync(d, 0o755);
  try {
    linkSync(real, twin);
  } catch {
    copyFileSync(real, twin);
  }
  chmodSync(twin, 0o755);
  return twin;
}

/** The bun running this test, as another uid may exec it. */
export const runnableBun = (): string => runnable(process.execPath);

/** The checkout root another uid can read from (the checkout itself, or the mirror). */
export const runnableRoot = (): string => (othersCanReach(ROOT) && othersCanReach(process.execPath, true) ? ROOT : mirrorRoot());
