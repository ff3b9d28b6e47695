/**
 * The span graph: opt-in (`graph.enabled = true` in ~/.substrate/config.toml), stored in
 * bun:sqlite under ~/.substrate/graph/, fed from trace.jsonl. See docs/TRACE.md.
 */
import { traceFilePath } from "../trace/writer.ts";
import { loadGraphConfig, configFilePath, type GraphConfig } from "./config.ts";
import { SpanGraph } from "./store.ts";

export { SpanGraph, type ChangedFile, type Writer, type AgentSummary, type SyncStats } from "./store.ts";
export { PrivacyFilter, defaultPrivacy, DEFAULT_IGNORE_PATHS, CODE_EXTENSIONS, type PrivacyConfig } from "./privacy.ts";
export { loadGraphConfig, configFilePath, GraphConfigError, type GraphConfig } from "./config.ts";

export class GraphDisabledError extends Error {
  constructor(readonly configFile: string) {
    super("the span graph is off (it is opt-in)");
    this.name = "GraphDisabledError";
  }
  get hint(): string {
    return `add a [graph] table with enabled = true to ${this.configFile}, then run the command again (spans already in trace.jsonl are ingested)`;
  }
}

/**
 * Open the graph for queries and catch up with the trace first. Throws GraphDisabledError
 * when the graph is off, GraphConfigError when the config file is invalid.
 */
export function openGraph(
  env: Record<string, string | undefined> = process.env,
  opts: { sync?: boolean; config?: GraphConfig } = {},
): SpanGraph {
  const cfg = opts.config ?? loadGraphConfig(env);
  if (!cfg.enabled) throw new GraphDisabledError(configFilePath(env));
  const g = new SpanGraph(cfg.dir, cfg.privacy, cfg.home);
  if (opts.sync !== false) g.sync(traceFilePath(env));
  return g;
}
