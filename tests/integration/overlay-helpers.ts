/** Shared by the overlay integration tests: fixture trees, a world run, tree manifests. */
import { chownSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync, chmodSync } from "node:fs";
import { join } from "node:path";
import type { OverlayStrategy } from "../../agent/world/fsdiff.ts";
import { prepareOverlayDirs, type OverlayDirs } from "../../agent/world/overlay.ts";
import { runInPrivateMountNs } from "../../src/sys/unshare.ts";
import { runnable, runnableBun } from "../helpers/runnable.ts";

const FIXTURE = join(import.meta.dir, "fixtures", "overlay-run.ts");

/** Writes a tree: keys ending in "/" are dirs, values are file contents. */
export function writeTree(root: string, files: Record<string, string>, modes: Record<string, number> = {}): void {
  mkdirSync(root, { recursive: true });
  for (const [rel, content] of Object.entries(files)) {
    const p = join(root, rel);
    if (rel.endsWith("/")) mkdirSync(p, { recursive: true });
    else {
      mkdirSync(join(p, ".."), { recursive: true });
      writeFileSync(p, content);
    }
  }
  for (const [rel, mode] of Object.entries(modes)) chmodSync(join(root, rel), mode);
}

/** path → "type mode size/target/sha" for every entry under root (sorted keys). */
export function manifest(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string, rel: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const r = rel + name;
      const st = lstatSync(p);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) {
        out[`${r}/`] = `d ${mode}`;
        walk(p, `${r}/`);
      } else if (st.isSymbolicLink()) out[r] = `l ${readlinkSync(p)}`;
      else out[r] = `f ${mode} ${new Bun.CryptoHasher("sha256").update(readFileSync(p)).digest("hex")}`;
    }
  };
  walk(root, "");
  return out;
}

export interface WorldRun {
  strategy: OverlayStrategy;
  dirs: OverlayDirs;
}

/** Mounts an overlay over `lower` in a throw-away namespace, runs `script` in it, unmounts. */
export async function runInOverlay(
  base: string,
  id: string,
  lower: string,
  script: string,
  opts: {
    strategy?: OverlayStrategy | "auto";
    userxattr?: boolean;
    snapshot?: string;
    work?: string;
    /** Run in a user namespace: userns.ts helpers + the host ids of world root. */
    userns?: { unshareArgs: string[]; PATH: string; owner: { uid: number; gid: number } };
  } = {},
): Promise<WorldRun> {
  const dirs = prepareOverlayDirs(id, base, opts.userns?.owner);
  const target = join(dirs.dir, "merged");
  mkdirSync(target);
  const { userns, ...rest } = opts;
  if (userns) chownSync(target, userns.owner.uid, userns.owner.gid);
  const spec = { lower, upper: dirs.upper, work: opts.work ?? dirs.work, target, script, ...rest };
  const r = await runInPrivateMountNs([runnableBun(), runnable(FIXTURE, false), JSON.stringify(spec)], {
    timeoutMs: 60_000,
    unshareArgs: userns?.unshareArgs,
    env: userns ? { ...(process.env as Record<string, string>), PATH: userns.PATH } : undefined,
  });
  if (r.code !== 0) throw new Error(`overlay run failed (code ${r.code}, signal ${r.signal}): ${r.stderr}`);
  const line = r.stdout.trim().split("\n").pop() as string;
  return { strategy: (JSON.parse(line) as { strategy: OverlayStrategy }).strategy, dirs };
}

/** Mount table lines of this (the host's) namespace that mention `path`. */
export function mountsUnder(path: string): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter((l) => l.includes(path));
}

/** Live processes whose command line mentions `path` (e.g. a leaked fuse-overlayfs daemon). */
export function processesMentioning(path: string): number[] {
  const pids: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, "utf8").includes(path)) pids.push(Number(d));
    } catch {}
  }
  return pids;
}
