/**
 * One version for both binaries: package version + git commit + content hash of the agent
 * build, injected at build time by scripts/build.ts (`--define`). Running from source
 * gives `commit: "dev"`. The host compares this with the agent's to decide "push".
 */
import pkg from "../package.json" with { type: "json" };
import type { Target, VersionInfo } from "./contract/index.ts";

declare const __SUBSTRATE_COMMIT__: string | undefined;
declare const __SUBSTRATE_AGENT_HASH__: string | undefined;
declare const __SUBSTRATE_TARGET__: string | undefined;

export function versionInfo(): VersionInfo {
  return {
    version: pkg.version,
    commit: typeof __SUBSTRATE_COMMIT__ === "string" ? __SUBSTRATE_COMMIT__ : "dev",
    agent_hash: typeof __SUBSTRATE_AGENT_HASH__ === "string" ? __SUBSTRATE_AGENT_HASH__ : "dev",
    target: (typeof __SUBSTRATE_TARGET__ === "string" ? __SUBSTRATE_TARGET__ : "dev") as Target,
  };
}

/** `0.1.0+abc1234.9f86d081884c` — what `--version` prints. */
export const versionString = (v: VersionInfo = versionInfo()): string => `${v.version}+${v.commit}.${v.agent_hash}`;

/** Two builds are interchangeable when version, commit and agent hash agree (not target). */
export const sameBuild = (a: VersionInfo, b: VersionInfo): boolean =>
  a.version === b.version && a.commit === b.commit && a.agent_hash === b.agent_hash;
