/**
 * Shared by the release and installer tests: build a real (native-only, --fast) release with
 * scripts/release.ts, and serve a release directory over loopback HTTP in GitHub's layout
 * (<base>/download/v<version>/<file>, <base>/latest/download/<file>).
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dir, "../..");
export const BUN = process.execPath;
export const NATIVE = process.arch === "arm64" ? "linux-arm64" : "linux-x64";

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Async spawn: the loopback server lives in this process, so spawnSync would deadlock it. */
export async function run(argv: string[], o: { cwd?: string; env?: Record<string, string | undefined> } = {}): Promise<Run> {
  const p = Bun.spawn(argv, { cwd: o.cwd ?? ROOT, env: (o.env ?? process.env) as Record<string, string>, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [stdout, stderr] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code: await p.exited, stdout, stderr };
}

/** HEAD, resolved once so every build of a test file uses the same commit (others commit concurrently). */
export async function headCommit(): Promise<string> {
  return (await run(["git", "rev-parse", "HEAD"])).stdout.trim();
}

export async function buildNativeRelease(out: string, commit: string, extra: string[] = []): Promise<Run> {
  const r = await run([BUN, "scripts/release.ts", "--native", "--fast", "--commit", commit, "--out", out, ...extra]);
  if (r.code !== 0) throw new Error(`release failed (${r.code}):\n${r.stderr}`);
  return r;
}

export function readSums(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of readFileSync(join(dir, "SHA256SUMS"), "utf8").trim().split("\n")) {
    const [sum, name] = l.split("  ");
    out[name!] = sum!;
  }
  return out;
}

export interface ReleaseServer {
  base: string;
  /** directory served; swap it to serve another (e.g. corrupted) release */
  dir: string;
  /** request paths seen, in order */
  requests: string[];
  stop(): void;
}

export function serveRelease(dir: string): ReleaseServer {
  const state: ReleaseServer = { base: "", dir, requests: [], stop: () => server.stop(true) };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const path = new URL(req.url).pathname;
      state.requests.push(path);
      const m = path.match(/^\/(?:download\/v([^/]+)|latest\/download)\/([^/]+)$/);
      if (!m) return new Response("not found\n", { status: 404 });
      const [, version, name] = m;
      const file = join(state.dir, name!);
      // A versioned URL only serves that version's release.
      if (version && !readFileSync(join(state.dir, "SHA256SUMS"), "utf8").includes(`-${version}-`)) return new Response("no such release\n", { status: 404 });
      if (!existsSync(file)) return new Response("not found\n", { status: 404 });
      return new Response(Bun.file(file));
    },
  });
  state.base = `http://127.0.0.1:${server.port}`;
  return state;
}
