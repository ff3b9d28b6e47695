/**
 * The replay context of a span (spec ReplayContext): what is needed to re-run a command the
 * same way later, without ever storing environment values.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { basename, dirname } from "node:path";
import type { ReplayContext } from "../contract/span.ts";
import { isDirty, isWorkTree, lastCommitOf } from "../sys/git.ts";

const sha256hex = (data: string | Uint8Array): string => createHash("sha256").update(data).digest("hex");

// envHash / currentUmask / worldImageVersion: zod- and git-free (replay-parts.ts), so the CLI's
// fast path computes them too (the host span the agent writes for it, src/cli/fast.ts).
export { envHash, currentUmask, worldImageVersion } from "./replay-parts.ts";
import { envHash, currentUmask } from "./replay-parts.ts";

/**
 * `policy_commit`: the git short hash of the last commit that touched the policy file when
 * its directory is a git work tree (plus `-dirty.<sha8>` when the file differs from HEAD, so
 * an uncommitted edit is still seen as drift); otherwise `sha256:<first 16 hex>` of the file.
 * null when the file does not exist (built-in policy).
 */
export function policyCommit(policyFile: string | null | undefined): string | null {
  if (!policyFile) return null;
  let content: Buffer;
  try {
    content = readFileSync(policyFile);
  } catch {
    return null;
  }
  const contentHash = sha256hex(content);
  const dir = dirname(policyFile);
  try {
    if (isWorkTree(dir)) {
      const file = basename(policyFile);
      const commit = lastCommitOf(dir, file);
      if (commit !== null) return isDirty(dir, file) ? `${commit}-dirty.${contentHash.slice(0, 8)}` : commit;
    }
  } catch {
    // git present but unhappy (permissions, corrupt repo): the content hash is still exact.
  }
  return `sha256:${contentHash.slice(0, 16)}`;
}

export interface ReplayContextInput {
  cwd: string;
  /** the command's environment (defaults to this process's) */
  env?: Record<string, string | undefined>;
  umask?: string;
  policyId?: string | null;
  /** precomputed policy_commit; else computed from policyFile */
  policyCommit?: string | null;
  policyFile?: string | null;
  worldImageVersion?: string | null;
}

export function buildReplayContext(i: ReplayContextInput): ReplayContext {
  const env = i.env ?? process.env;
  return {
    path: env.PATH ?? null,
    env_hash: envHash(env),
    umask: i.umask ?? currentUmask(),
    locale: env.LC_ALL || env.LANG || null,
    cwd: i.cwd,
    policy_id: i.policyId ?? null,
    policy_commit: i.policyCommit !== undefined ? i.policyCommit : policyCommit(i.policyFile),
    world_image_version: i.worldImageVersion ?? null,
  };
}
