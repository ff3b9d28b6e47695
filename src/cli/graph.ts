/**
 * `substrate graph what-changed <span> | who-wrote <path> | agent <id> | sync` [--json].
 * The graph is opt-in (`[graph] enabled = true` in ~/.substrate/config.toml); every query
 * first ingests what trace.jsonl gained since the last one.
 */
import { resolve } from "node:path";
import { defineCommand } from "citty";
import type { SpanGraph } from "../graph/index.ts";
import { CliError, ExitCode } from "./_errors.ts";
import { getGlobals } from "./_globals.ts";

/**
 * `privacy.ignore_paths` of every policy in ~/.substrate/policies (spec: the policy carries the
 * graph's privacy settings). The union is used — the graph is per user, not per directory, so
 * a path any policy keeps private stays out. Unreadable policies are skipped (policy validate
 * reports them); the built-in defaults always apply.
 */
async function policyIgnorePaths(): Promise<string[]> {
  const { readdirSync, readFileSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { policiesDir, parsePolicyText, validatePolicy } = await import("../broker/index.ts");
  const dir = policiesDir();
  const out: string[] = [];
  let files: string[] = [];
  try {
    files = readdirSync(dir).filter((f) => /\.(ya?ml|toml)$/.test(f) && !f.startsWith("."));
  } catch {
    return out;
  }
  for (const f of files) {
    try {
      const file = join(dir, f);
      const doc = validatePolicy(parsePolicyText(readFileSync(file, "utf8"), file), file);
      out.push(...(doc.privacy?.ignore_paths ?? []));
    } catch {
      /* invalid policy: `substrate policy validate` says why */
    }
  }
  return out;
}

async function open(): Promise<SpanGraph> {
  const { openGraph, loadGraphConfig, GraphDisabledError, GraphConfigError } = await import("../graph/index.ts");
  try {
    const config = loadGraphConfig(process.env);
    if (config.enabled) config.privacy.ignore_paths.push(...(await policyIgnorePaths()));
    return openGraph(process.env, { config });
  } catch (e) {
    if (e instanceof GraphDisabledError) throw new CliError(ExitCode.USAGE, e.message, e.hint);
    if (e instanceof GraphConfigError) throw new CliError(ExitCode.USAGE, e.message, "see docs/TRACE.md (graph) for the [graph] keys");
    throw e;
  }
}

const json = (a: { json?: boolean }) => Boolean(a.json) || getGlobals().json;
const jsonArg = { json: { type: "boolean", description: "JSON output" } } as const;

const whatChanged = defineCommand({
  meta: { name: "what-changed", description: "Files a span (and its child spans) wrote, modified or deleted" },
  args: { span: { type: "positional", required: true, description: "span id (spn_…)" }, ...jsonArg },
  async run({ args }) {
    const g = await open();
    try {
      const id = String(args.span);
      const files = g.whatChanged(id);
      const known = g.db.prepare("SELECT 1 FROM span WHERE id = ?").get(id);
      if (!known) throw new CliError(ExitCode.USAGE, `span ${id} is not in the graph`, "list spans with `substrate trace --last 20`");
      if (json(args)) console.log(JSON.stringify({ span_id: id, files }, null, 2));
      else if (files.length === 0) console.log(`span ${id} changed no indexed file (only code files are indexed unless graph.index_user_docs)`);
      else for (const f of files) console.log(`${({ write: "+", mod: "~", delete: "-" } as const)[f.kind]} ${f.path}${f.span_id !== id ? `   (child span ${f.span_id})` : ""}`);
    } finally {
      g.close();
    }
  },
});

const whoWrote = defineCommand({
  meta: { name: "who-wrote", description: "Spans that wrote a file, or anything under a directory (newest first)" },
  args: {
    path: { type: "positional", required: true, description: "file or directory" },
    limit: { type: "string", description: "at most N rows (default 100)", valueHint: "N" },
    ...jsonArg,
  },
  async run({ args }) {
    const limit = args.limit === undefined ? 100 : Number(args.limit);
    if (!Number.isInteger(limit) || limit <= 0) throw new CliError(ExitCode.USAGE, `--limit expects a positive integer, got "${args.limit}"`, "example: --limit 20");
    const g = await open();
    try {
      const path = resolve(String(args.path));
      const rows = g.whoWrote(path, limit);
      if (json(args)) console.log(JSON.stringify({ path, writers: rows }, null, 2));
      else if (rows.length === 0) console.log(`no recorded span wrote ${path} (or it is outside what the graph indexes)`);
      else for (const r of rows) console.log(`${r.ts}  ${r.span_id}  ${r.agent_id.padEnd(8)} ${r.kind.padEnd(6)} ${r.path}  ← ${r.cmd ?? ""}`);
    } finally {
      g.close();
    }
  },
});

const agent = defineCommand({
  meta: { name: "agent", description: "What an agent did: spans, failures, files written, recent commands" },
  args: { id: { type: "positional", required: true, description: "agent id (human, claude, …)" }, ...jsonArg },
  async run({ args }) {
    const g = await open();
    try {
      const id = String(args.id);
      const a = g.agent(id);
      if (!a) {
        const known = (g.db.prepare("SELECT id FROM agent ORDER BY id").all() as { id: string }[]).map((r) => r.id);
        throw new CliError(ExitCode.USAGE, `agent ${id} has no spans in the graph`, known.length ? `known agents: ${known.join(", ")}` : "no spans ingested yet");
      }
      if (json(args)) {
        console.log(JSON.stringify(a, null, 2));
        return;
      }
      console.log(`agent ${a.agent_id}: ${a.spans} spans (${a.failures} failed), ${a.files_written} files written, ${a.first_ts} … ${a.last_ts}`);
      if (a.top_files.length) {
        console.log("most written:");
        for (const f of a.top_files) console.log(`  ${String(f.writes).padStart(6)}  ${f.path}`);
      }
      console.log("recent:");
      for (const r of a.recent) console.log(`  ${r.ts}  ${r.span_id}  ${r.exit === null ? "      " : `exit ${String(r.exit).padEnd(2)}`} ${r.cmd ?? ""}`);
    } finally {
      g.close();
    }
  },
});

const sync = defineCommand({
  meta: { name: "sync", description: "Ingest new spans from trace.jsonl now and print the graph's size" },
  args: { ...jsonArg },
  async run({ args }) {
    const g = await open(); // open() already synced
    try {
      const c = g.counts();
      if (json(args)) console.log(JSON.stringify(c));
      else console.log(Object.entries(c).map(([k, v]) => `${k} ${v}`).join(", "));
    } finally {
      g.close();
    }
  },
});

export default defineCommand({
  meta: { name: "graph", description: "Query the span graph (opt-in: [graph] enabled = true in ~/.substrate/config.toml)" },
  subCommands: { "what-changed": whatChanged, "who-wrote": whoWrote, agent, sync },
});
