/**
 * Issue 16 test fixture: a test agent, a project, a HOME, and a shim dir whose `bash`/`sh`
 * are the entry (links to the compiled binary, or exec -a scripts from source) — the way
 * `substrate agent setup` / `substrate run` lay them out.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostArgv, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

export interface EntryFixture {
  agent: TestAgent;
  proj: string;
  home: string;
  shimDir: string;
  /** the entry as an agent would name it */
  shim: string;
  env(extra?: Record<string, string>): Record<string, string>;
  /** plain bash's env: the same, without the shim dir */
  plainEnv(extra?: Record<string, string>): Record<string, string>;
  cleanup(): Promise<void>;
}

const sq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export async function entryFixture(): Promise<EntryFixture> {
  const agent = await startAgent();
  const proj = tempProject("substrate-bash-entry-");
  // a git repo as `git init` leaves it (with hooks/): a world's placeholder for a missing
  // .git/hooks would change the next command's world key (first command → another world)
  mkdirSync(join(proj, ".git", "hooks"), { recursive: true });
  const home = mkdtempSync(join(tmpdir(), "substrate-home-"));
  const shimDir = mkdtempSync(join(tmpdir(), "substrate-shims-"));
  const sub = hostArgv();
  for (const n of ["bash", "sh"]) {
    const f = join(shimDir, n);
    if (sub.length === 1) symlinkSync(sub[0]!, f);
    else {
      writeFileSync(f, `#!/bin/bash\nexec -a ${n} ${sub.map(sq).join(" ")} "$@"\n`);
      chmodSync(f, 0o755);
    }
  }
  const base = { HOME: home, LANG: "C.UTF-8", SUBSTRATE_WORLD_SOCKET: agent.socket, SUBSTRATE_TRACE: join(home, "trace.jsonl") };
  return {
    agent,
    proj,
    home,
    shimDir,
    shim: join(shimDir, "bash"),
    env: (extra = {}) => ({ ...base, PATH: `${shimDir}:/usr/local/bin:/usr/bin:/bin`, ...extra }),
    plainEnv: (extra = {}) => ({ ...base, PATH: "/usr/local/bin:/usr/bin:/bin", ...extra }),
    async cleanup() {
      await agent.stop();
      for (const d of [proj, home, shimDir]) rmSync(d, { recursive: true, force: true });
    },
  };
}

export interface Ran {
  code: number | null;
  signal: string | null;
  out: string;
  err: string;
}

export function run(argv: string[], o: { cwd: string; env: Record<string, string>; stdin?: string | "devnull" | { file: string } }): Ran {
  const stdin = o.stdin === undefined || o.stdin === "devnull" ? "ignore" : typeof o.stdin === "string" ? Buffer.from(o.stdin) : Bun.file(o.stdin.file);
  const p = Bun.spawnSync(argv, { cwd: o.cwd, env: o.env, stdin, stdout: "pipe", stderr: "pipe", timeout: 60_000 });
  return { code: p.exitCode, signal: (p.signalCode as string | null) ?? null, out: p.stdout.toString(), err: p.stderr.toString() };
}

/** Is a process whose argv[0] is `marker` running in the world of this project? (asked in the world itself) */
export function worldHas(f: EntryFixture, marker: string): boolean {
  const r = run(["bash", "-c", `pgrep -f '^${marker}' >/dev/null && echo yes || echo no`], { cwd: f.proj, env: f.env() });
  return r.out.trim() === "yes";
}

/** Wait (bounded) until probe() is true. Not a timing assertion: the deadline only stops a hang. */
export async function until(probe: () => boolean, ms = 20_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (probe()) return true;
    await Bun.sleep(50);
  }
  return probe();
}
