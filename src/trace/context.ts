/**
 * The replay context of a span (spec ReplayContext): what is needed to re-run a command the
 * same way later, without ever storing environment values.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { basename, dirname } from "node:path";
import type { VersionInfo } from "../contract/common.ts";
import type { ReplayContext } from "../contract/span.ts";
import { isDirty, isWorkTree, lastCommitOf } from "../sys/git.ts";

const sha256hex = (data: string | Uint8Array): string => createHash("sha256").update(data).digest("hex");

/**
 * Variables that change on every shell hop without changing what a command does; leaving
 * them out keeps env_hash comparable between the original run and a replay.
 */
const VOLATILE = new Set(["_", "SHLVL", "PWD", "OLDPWD", "SUBSTRATE_SPAN_ID", "SUBSTRATE_PARENT_SPAN"]);

/** `sha256:<hex>` over the sorted `NAME=VALUE` pairs (NUL separated). Values never leave this function. */
export function envHash(env: Record<string, string | undefined> = process.env): string {
  const h = createHash("sha256");
  for (const k of Object.keys(env).sort()) {
    const v = env[k];
    if (v === undefined || VOLATILE.has(k)) continue;
    h.update(k).update("=").update(v).update("\0");
  }
  return `sha256:${h.digest("hex")}`;
}

/** The process umask as an octal string ("0022"). Reading it means setting it: restore at once. */
export function currentUmask(): string {
  const m = process.umask();
  return `0${(m & 0o777).toString(8).padStart(3, "0")}`;
}

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

/**
 * `world_image_version`: the world agent build's identity, as embedded at build time
 * (scripts/build.ts `--define`). Same text as src/version.ts `versionString`
 * (`0.1.0+abc1234.9f86d081884c`); duplicated here because the agent imports src/trace
 * and must not import host modules.
 */
export const worldImageVersion = (v: Pick<VersionInfo, "version" | "commit" | "agent_hash">): string =>
  `${v.version}+${v.commit}.${v.agent_hash}`;

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
