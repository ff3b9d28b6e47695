/**
 * The replay context's parts that need no policy and no git (spec ReplayContext): the env
 * hash, the umask, the world image version. Imports nothing: the CLI's fast path
 * (src/cli/fast.ts) computes them for the host span the agent writes on its behalf, with the
 * same code as every other span.
 */
import type { VersionInfo } from "../contract/common.ts";

/**
 * Variables that change on every shell hop without changing what a command does; leaving
 * them out keeps env_hash comparable between the original run and a replay.
 */
const VOLATILE = new Set(["_", "SHLVL", "PWD", "OLDPWD", "SUBSTRATE_SPAN_ID", "SUBSTRATE_PARENT_SPAN"]);

/** `sha256:<hex>` over the sorted `NAME=VALUE` pairs (NUL separated). Values never leave this function. */
export function envHash(env: Record<string, string | undefined> = process.env): string {
  // Bun's hasher, not node:crypto (whose import costs ~3 ms of a compiled binary's start)
  const h = new Bun.CryptoHasher("sha256");
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
 * `world_image_version`: the world agent build's identity, as embedded at build time
 * (scripts/build.ts `--define`). Same text as src/version.ts `versionString`
 * (`0.1.0+abc1234.9f86d081884c`); duplicated here because the agent imports src/trace
 * and must not import host modules.
 */
export const worldImageVersion = (v: Pick<VersionInfo, "version" | "commit" | "agent_hash">): string =>
  `${v.version}+${v.commit}.${v.agent_hash}`;
