/**
 * Graph settings from `~/.substrate/config.toml` (the `[graph]` table of the ConfigFile
 * contract, src/contract/config.ts — parsed with the same schema so the CLI and the graph
 * never disagree about what the file says):
 *
 *   [graph]
 *   enabled = true            # off by default (spec: opt-in)
 *   index_user_docs = false   # index non-code files too
 *   hash_non_code = false     # content hashes for non-code files (code files are hashed)
 *
 * `SUBSTRATE_HOME` moves the whole `~/.substrate` directory (as for the rest of the CLI).
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import TOML from "@iarna/toml";
import { ConfigFile } from "../contract/config.ts";
import { defaultPrivacy, type PrivacyConfig } from "./privacy.ts";

export interface GraphConfig {
  enabled: boolean;
  /** the database directory: ~/.substrate/graph/ */
  dir: string;
  home: string;
  privacy: PrivacyConfig;
  /** the config file read (or "defaults") */
  source: string;
}

export class GraphConfigError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = "GraphConfigError";
  }
}

type Env = Record<string, string | undefined>;
export const homeOf = (env: Env = process.env): string => env.HOME || homedir();
const substrateDir = (env: Env): string => env.SUBSTRATE_HOME || join(homeOf(env), ".substrate");
export const configFilePath = (env: Env = process.env): string => join(substrateDir(env), "config.toml");

export function loadGraphConfig(env: Env = process.env): GraphConfig {
  const home = homeOf(env);
  const file = configFilePath(env);
  const base: GraphConfig = { enabled: false, dir: join(substrateDir(env), "graph"), home, privacy: defaultPrivacy(), source: "defaults" };
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return base;
  }
  let raw: unknown;
  try {
    raw = TOML.parse(text);
  } catch (e) {
    throw new GraphConfigError(file, `invalid TOML: ${(e as Error).message.split("\n")[0]}`);
  }
  const r = ConfigFile.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new GraphConfigError(file, `${issue.path.join(".") || "(root)"}: ${issue.message}`);
  }
  const g = r.data.graph;
  return {
    ...base,
    enabled: g.enabled,
    source: file,
    privacy: { ...base.privacy, index_user_docs: g.index_user_docs, hash_non_code: g.hash_non_code },
  };
}
