/**
 * `substrate trace <span_id> [--json]`: one span with its events, parent, children and fs diff.
 * `substrate trace [--last N] [--agent ID] [--cmd PATTERN] [--event TYPE] [--since TS] [--follow] [--json]`:
 * a filtered list (default: the last 20), or a live tail.
 */
import { defineCommand } from "citty";
import type { Span } from "../contract/index.ts";
import { CliError, ExitCode } from "./_errors.ts";
import { getGlobals } from "./_globals.ts";
import { SPAN_ID_RE as SPAN_ID } from "../contract/ids.ts";

function positiveInt(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new CliError(ExitCode.USAGE, `${flag} expects a positive integer, got "${v}"`, `example: ${flag} 20`);
  return n;
}

/** One line per span for lists: time, id, event, agent, exit, command. */
export function listLine(s: Span): string {
  const exit = s.exit === undefined ? "" : `exit ${s.exit}`;
  return `${s.ts}  ${s.span_id}  ${s.event_type.padEnd(16)} ${s.agent_id.padEnd(8)} ${exit.padEnd(8)} ${s.cmd ?? s.reason ?? ""}`;
}

export function formatSpanDetail(events: Span[], parent: Span | undefined, children: Span[], topN = 20): string {
  const main = events.findLast((e) => e.event_type === "command_complete") ?? events.at(-1)!;
  const out: string[] = [];
  const row = (k: string, v: unknown) => {
    if (v !== undefined && v !== null && v !== "") out.push(`  ${k.padEnd(15)} ${typeof v === "string" ? v : JSON.stringify(v)}`);
  };
  out.push(`span ${main.span_id}`);
  row("command", main.cmd);
  row("event", events.map((e) => e.event_type).join(" → "));
  row("started", events[0]!.ts);
  row("exit", main.exit);
  row("duration", main.duration_ms !== undefined ? `${main.duration_ms} ms` : undefined);
  row("agent", main.agent_id);
  row("component", main.component);
  row("session", main.session_id);
  row("cwd", main.cwd);
  row("world", main.world_id ? `${main.world_id}${main.world_backend ? ` (${main.world_backend})` : ""}` : undefined);
  row("policy", main.policy_id ? `${main.policy_id}${main.policy_commit ? ` @ ${main.policy_commit}` : ""}` : undefined);
  row("reason", main.reason);
  row("pattern", main.pattern);
  row("pty", main.pty);
  row("egress", main.egress_bytes !== undefined ? `${main.egress_bytes} bytes` : undefined);
  if (main.scopes_used?.length) row("scopes", main.scopes_used.join(", "));
  row("replay of", main.replay_of);
  const d = main.fs_diff;
  if (d) {
    out.push(`  fs diff         ${d.writes.length} writes, ${d.mods.length} mods, ${d.deletes.length} deletes${d.truncated ? " (truncated)" : ""}`);
    const list = (mark: string, paths: string[]) => {
      for (const p of paths.slice(0, topN)) out.push(`    ${mark} ${p}`);
      if (paths.length > topN) out.push(`    … ${paths.length - topN} more`);
    };
    list("+", d.writes);
    list("~", d.mods);
    list("-", d.deletes);
    if (d.summary) row("summary", d.summary);
    if (d.tree_hash) row("tree hash", d.tree_hash);
  } else if (main.fs_diff_summary) {
    row("fs diff", main.fs_diff_summary);
    row("tree hash", main.tree_hash);
  }
  const rc = main.replay_context;
  if (rc) {
    out.push("  replay context");
    row("  PATH", rc.path);
    row("  umask", rc.umask);
    row("  locale", rc.locale);
    row("  env hash", rc.env_hash);
    row("  world image", rc.world_image_version);
  }
  if (main.parent_span) out.push(`  parent          ${main.parent_span}${parent ? `  ${parent.cmd ?? ""}` : " (not in this trace)"}`);
  if (children.length) {
    out.push(`  children (${children.length})`);
    for (const c of children) out.push(`    ${c.span_id}  ${c.exit === undefined ? "" : `exit ${c.exit}  `}${c.cmd ?? c.event_type}`);
  }
  return out.join("\n");
}

/** The latest line per span id (complete wins over start), in first-seen order. */
function latestPerSpan(spans: Span[]): Span[] {
  const m = new Map<string, Span>();
  for (const s of spans) {
    const prev = m.get(s.span_id);
    if (!prev || s.event_type !== "command_start") m.set(s.span_id, s);
  }
  return [...m.values()];
}

export default defineCommand({
  meta: { name: "trace", description: "Show a span (parent, children, fs diff) or list/tail spans from trace.jsonl" },
  args: {
    span: { type: "positional", required: false, description: "span id (spn_…)" },
    json: { type: "boolean", description: "JSON output (NDJSON with --follow)" },
    last: { type: "string", description: "only the last N spans (default 20 when listing)", valueHint: "N" },
    agent: { type: "string", description: "only spans of this agent_id", valueHint: "ID" },
    cmd: { type: "string", description: "only commands matching PATTERN (glob with * and ?, else substring)", valueHint: "PATTERN" },
    event: { type: "string", description: "only this event_type (command_complete, policy_denied, …)", valueHint: "TYPE" },
    since: { type: "string", description: "only spans at or after this time (ISO 8601)", valueHint: "TS" },
    follow: { type: "boolean", alias: "f", description: "keep printing new spans as they are written" },
  },
  async run({ args }) {
    const { readSpans, findSpan, followSpans, traceFilePath } = await import("../trace/index.ts");
    const { SpanEventType } = await import("../contract/index.ts");
    const json = Boolean(args.json) || getGlobals().json;
    const path = traceFilePath();

    if (args.span !== undefined) {
      const id = String(args.span);
      if (!SPAN_ID.test(id))
        throw new CliError(ExitCode.USAGE, `"${id}" is not a span id (expected spn_<uuidv7>)`, "list recent spans with `substrate trace --last 20`");
      // one pass for the span's own lines and its children (child spans and replays of it)
      const related = await readSpans({ path, where: (s) => s.span_id === id || s.parent_span === id || s.replay_of === id });
      const events = related.filter((s) => s.span_id === id);
      if (events.length === 0)
        throw new CliError(ExitCode.USAGE, `span ${id} is not in ${path} (or its rotated files)`, "list recent spans with `substrate trace --last 20`; SUBSTRATE_TRACE selects another trace file");
      const main = events.findLast((e) => e.event_type === "command_complete") ?? events.at(-1)!;
      const parent = main.parent_span ? await findSpan(main.parent_span, path) : undefined;
      const children = latestPerSpan(related.filter((s) => s.span_id !== id));
      if (json) console.log(JSON.stringify({ span: main, events, parent: parent ?? null, children }, null, 2));
      else console.log(formatSpanDetail(events, parent, children));
      return;
    }

    let eventType: Span["event_type"] | undefined;
    if (args.event !== undefined) {
      const r = SpanEventType.safeParse(args.event);
      if (!r.success) throw new CliError(ExitCode.USAGE, `unknown event type "${args.event}"`, `one of: ${SpanEventType.options.join(", ")}`);
      eventType = r.data;
    }
    if (args.since !== undefined && Number.isNaN(Date.parse(String(args.since))))
      throw new CliError(ExitCode.USAGE, `--since expects an ISO 8601 time, got "${args.since}"`, "example: --since 2026-01-01T00:00:00Z");
    const filter = {
      path,
      ...(args.agent !== undefined ? { agent_id: String(args.agent) } : {}),
      ...(args.cmd !== undefined ? { cmd: String(args.cmd) } : {}),
      ...(eventType ? { event_type: eventType } : {}),
      ...(args.since !== undefined ? { since: String(args.since) } : {}),
    };
    const last = positiveInt(args.last as string | undefined, "--last") ?? 20;
    const spans = await readSpans({ ...filter, last });
    if (json && !args.follow) console.log(JSON.stringify(spans, null, 2));
    else for (const s of spans) console.log(json ? JSON.stringify(s) : listLine(s));
    if (!args.follow) {
      if (spans.length === 0 && !json) process.stderr.write(`substrate: no spans${Object.keys(filter).length > 1 ? " match" : ` in ${path}`}\n`);
      return;
    }
    const stop = new AbortController();
    process.once("SIGINT", () => stop.abort());
    process.once("SIGTERM", () => stop.abort());
    for await (const s of followSpans(filter, { signal: stop.signal })) console.log(json ? JSON.stringify(s) : listLine(s));
  },
});
