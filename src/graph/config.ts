/**
 * Graph settings from `~/.substrate/config.toml`:
 *
 *   [graph]
 *   enabled = true            # off by default (spec: opt-in)
 *   index_user_docs = false
 *   hash_files = false        # content hashing, opt-in
 *   hash_code_only = true
 *   ignore_paths = ["~/work/private"]   # added to the built-in privacy defaults
 *
 * Only the `[graph]` table is read here; the rest of the file belongs to the CLI config.
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import TOML from "@iarna/toml";
import { z } from "zod";
import { defaultPrivacy, type PrivacyConfig } from "./privacy.ts";

const GraphTable = z
  .object({
    enabled: z.boolean().default(false),
    index_user_docs: z.boolean().default(false),
    hash_files: z.boolean().default(false),
    hash_code_only: z.boolean().default(true),
    ignore_paths: z.array(z.string()).default([]),
  })
  .partial()
  .loose();

export interface GraphConfig {
  enabled: boolean;
  /** the database directory: ~/.substrate/graph/ */
  dir: string;
  home: string;
  privacy: PrivacyConfig;
  /** where the settings came from, for error messages */
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

export const homeOf = (env: Record<string, string | undefined> = process.env): string => env.HOME || homedir();
export const configFilePath = (env: Record<string, string | undefined> = process.env): string =>
  join(homeOf(env), ".substrate", "config.toml");

export function loadGraphConfig(env: Record<string, string | undefined> = process.env): GraphConfig {
  const home = homeOf(env);
  const file = configFilePath(env);
  const privacy = defaultPrivacy();
  const base: GraphConfig = { enabled: false, dir: join(home, ".substrate", "graph"), home, privacy, source: "defaults" };
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return base;
  }
  let doc: Record<string, unknown>;
  try {
    doc = TOML.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new GraphConfigError(file, `invalid TOML: ${(e as Error).message}`);
  }
  if (doc.graph === undefined) return { ...base, source: file };
  const r = GraphTable.safeParse(doc.graph);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new GraphConfigError(file, `graph.${issue.path.join(".")}: ${issue.message}`);
  }
  const g = r.data;
  return {
    enabled: g.enabled ?? false,
    dir: base.dir,
    home,
    source: file,
    privacy: {
      ignore_paths: [...privacy.ignore_paths, ...(g.ignore_paths ?? [])],
      index_user_docs: g.index_user_docs ?? privacy.index_user_docs,
      hash_files: g.hash_files ?? privacy.hash_files,
      hash_code_only: g.hash_code_only ?? privacy.hash_code_only,
    },
  };
}
