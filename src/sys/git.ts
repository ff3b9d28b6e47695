/**
 * git(1), the few read-only queries Substrate needs (policy_commit of a policy file).
 * Typed results, typed errors carrying the command line and stderr.
 */
export class GitError extends Error {
  constructor(
    readonly argv: string[],
    readonly exitCode: number,
    readonly stderr: string,
  ) {
    super(`${argv.join(" ")} exited ${exitCode}: ${stderr.trim() || "(no stderr)"}`);
    this.name = "GitError";
  }
}

function git(args: string[], cwd: string): { exit: number; stdout: string; stderr: string; argv: string[] } {
  const argv = ["git", "-C", cwd, ...args];
  let p;
  try {
    // GIT_OPTIONAL_LOCKS=0: a read-only query must never take index.lock in the user's repo.
    p = Bun.spawnSync(argv, { env: { ...process.env, GIT_OPTIONAL_LOCKS: "0", LC_ALL: "C" }, stdin: "ignore" });
  } catch (e) {
    throw new GitError(argv, 127, `git not found: ${(e as Error).message}`);
  }
  return { exit: p.exitCode ?? 1, stdout: p.stdout.toString(), stderr: p.stderr.toString(), argv };
}

/** Is `dir` inside a git work tree? (false when git is missing) */
export function isWorkTree(dir: string): boolean {
  try {
    const r = git(["rev-parse", "--is-inside-work-tree"], dir);
    return r.exit === 0 && r.stdout.trim() === "true";
  } catch {
    return false;
  }
}

/** Short hash of the last commit touching `file` (relative to or under `dir`), or null if never committed. */
export function lastCommitOf(dir: string, file: string): string | null {
  const r = git(["log", "-1", "--format=%h", "--", file], dir);
  if (r.exit !== 0) throw new GitError(r.argv, r.exit, r.stderr);
  const h = r.stdout.trim();
  return h === "" ? null : h;
}

/** True when `file` differs from HEAD (modified, staged, or untracked). */
export function isDirty(dir: string, file: string): boolean {
  const r = git(["status", "--porcelain", "--", file], dir);
  if (r.exit !== 0) throw new GitError(r.argv, r.exit, r.stderr);
  return r.stdout.trim() !== "";
}
