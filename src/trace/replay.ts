/**
 * Replay (spec section 3): re-run a recorded command in a FRESH isolated world with the
 * recorded cwd, PATH, umask and locale; compare exit code and fs diff with the original;
 * warn on drift (policy or world image changed since the span was recorded).
 *
 * The world is reached through the small `ReplayWorld` interface (the agent client's
 * `execute` with `isolated: true` and `capabilities`), so the comparison logic is testable
 * on its own and the CLI decides how to reach the agent.
 */
import type { ExecuteRequestInput, ExecuteResponse } from "../contract/execute.ts";
import type { FsDiff } from "../contract/world.ts";
import type { PolicyCheckResult, ReplayReport, Span } from "../contract/span.ts";
import { newSpanId } from "../contract/common.ts";
import { isRedacted } from "./redact.ts";
import { appendSpanSync } from "./writer.ts";

export const POLICY_DRIFT = "Policy has changed since span was recorded";
export const IMAGE_DRIFT = "World image version differs from original";

export interface ReplayWorld {
  execute(req: ExecuteRequestInput): Promise<ExecuteResponse>;
  /** the world agent's build version now (worldImageVersion of its VersionInfo), null if unknown */
  worldImageVersion(): Promise<string | null>;
}

export class ReplayError extends Error {
  constructor(
    message: string,
    /** exit code from the taxonomy: 2 usage, 3 agent unreachable, 4 not supported */
    readonly exitCode: number,
    readonly hint?: string,
  ) {
    super(message);
    this.name = "ReplayError";
  }
}

export interface DriftInput {
  /** policy_commit of the policy in force now for the span's cwd (null: built-in / unknown) */
  policyCommit: string | null | undefined;
  /** policy id in force now */
  policyId?: string | null;
  worldImageVersion: string | null | undefined;
}

/** Drift warnings, worded as the spec prints them, with the recorded and current values. */
export function driftWarnings(span: Span, now: DriftInput): string[] {
  const rc = span.replay_context;
  const out: string[] = [];
  const recPolicy = rc?.policy_commit ?? span.policy_commit ?? null;
  const recPolicyId = rc?.policy_id ?? span.policy_id ?? null;
  if (now.policyCommit !== undefined && (recPolicy ?? null) !== (now.policyCommit ?? null))
    out.push(`${POLICY_DRIFT} (recorded ${recPolicy ?? "none"}, now ${now.policyCommit ?? "none"})`);
  else if (now.policyId != null && recPolicyId != null && now.policyId !== recPolicyId)
    out.push(`${POLICY_DRIFT} (recorded policy ${recPolicyId}, now ${now.policyId})`);
  const recImage = rc?.world_image_version ?? null;
  if (now.worldImageVersion !== undefined && recImage !== (now.worldImageVersion ?? null))
    out.push(`${IMAGE_DRIFT} (recorded ${recImage ?? "unknown"}, now ${now.worldImageVersion ?? "unknown"})`);
  return out;
}

const normalize = (paths: string[], cwd: string | undefined): string[] => {
  const prefix = cwd ? `${cwd.replace(/\/+$/, "")}/` : undefined;
  return [
    ...new Set(paths.map((p) => (prefix && p.startsWith(prefix) ? p.slice(prefix.length) : p).replace(/^\.\//, ""))),
  ].sort();
};

export const summarizeDiff = (d: FsDiff | undefined, summary?: string): string => {
  if (!d) return summary ?? "no fs diff recorded";
  const s = `${d.writes.length} writes, ${d.mods.length} mods, ${d.deletes.length} deletes`;
  return d.truncated ? `${s} (truncated${d.summary ? `: ${d.summary}` : ""})` : s;
};

export type FsDiffComparison = ReplayReport["fs_diff"];

/**
 * Compare two diffs. Full path sets when both are complete; the tree hash when either list
 * was truncated (a truncated list alone proves nothing); the summary text as a last resort.
 */
export function compareFsDiff(
  original: { fs_diff?: FsDiff; fs_diff_summary?: string; tree_hash?: string },
  replay: FsDiff | undefined,
  cwd: string | undefined,
  topN = 10,
): FsDiffComparison {
  const empty = { writes: [], mods: [], deletes: [] };
  const o = original.fs_diff;
  const oHash = o?.tree_hash ?? original.tree_hash ?? null;
  const rHash = replay?.tree_hash ?? null;
  const base = {
    original_summary: summarizeDiff(o, original.fs_diff_summary),
    replay_summary: summarizeDiff(replay),
    only_in_original: { ...empty },
    only_in_replay: { ...empty },
    tree_hash: { original: oHash, replay: rHash },
  };
  if (!o && !original.fs_diff_summary && !oHash) return { compared: false, match: true, ...base };
  if (!replay) return { compared: true, match: false, ...base, replay_summary: "the world returned no fs diff" };
  if (o && !o.truncated && !replay.truncated) {
    const side = (k: "writes" | "mods" | "deletes") => {
      const a = normalize(o[k], cwd);
      const b = normalize(replay[k], cwd);
      const bs = new Set(b);
      const as = new Set(a);
      return { onlyO: a.filter((p) => !bs.has(p)), onlyR: b.filter((p) => !as.has(p)) };
    };
    const w = side("writes");
    const m = side("mods");
    const d = side("deletes");
    const match = [w, m, d].every((x) => x.onlyO.length === 0 && x.onlyR.length === 0);
    return {
      compared: true,
      match,
      ...base,
      only_in_original: { writes: w.onlyO.slice(0, topN), mods: m.onlyO.slice(0, topN), deletes: d.onlyO.slice(0, topN) },
      only_in_replay: { writes: w.onlyR.slice(0, topN), mods: m.onlyR.slice(0, topN), deletes: d.onlyR.slice(0, topN) },
    };
  }
  if (oHash && rHash) return { compared: true, match: oHash === rHash, ...base };
  return { compared: true, match: base.original_summary === base.replay_summary, ...base };
}

export interface ReplayOptions {
  world: ReplayWorld;
  /** policy now in force for the span's cwd (drift check); undefined = not checked */
  policyCommit?: string | null;
  policyId?: string | null;
  topN?: number;
  /** write a `replay` span for the re-run (default true) */
  record?: boolean;
  tracePath?: string;
  sessionId?: string;
  /** the world's project directory (as `substrate -c` would pick it for the cwd); default: the cwd */
  projectDir?: string;
}

/** The execute request that reproduces the span's context in a fresh isolated world. */
export function replayRequest(span: Span, projectDir?: string): ExecuteRequestInput {
  const rc = span.replay_context;
  if (span.cmd === undefined || span.cmd === "")
    throw new ReplayError(`span ${span.span_id} (${span.event_type}) has no command to replay`, 2);
  if (isRedacted(span.cmd))
    throw new ReplayError(
      `span ${span.span_id} cannot be replayed: its command held secrets that were redacted in the trace`,
      4,
      "re-run the command yourself; secrets are never stored in trace.jsonl",
    );
  const cwd = rc?.cwd ?? span.cwd;
  const env: Record<string, string> = {};
  if (rc?.path) env.PATH = rc.path;
  if (rc?.locale) {
    env.LANG = rc.locale;
    env.LC_ALL = rc.locale;
  }
  // ExecuteRequest has no umask field: the command runs as `bash -c CMD`, so set it first.
  const cmd = rc?.umask ? `umask ${rc.umask}\n${span.cmd}` : span.cmd;
  return {
    cmd,
    ...(cwd && cwd.startsWith("/") ? { cwd } : {}),
    env,
    agent_id: span.agent_id,
    isolated: true,
    pty: false,
    world: { reuse_session: false, ...(projectDir ? { project_dir: projectDir } : {}) },
  };
}

/** Replay one span (a `command_complete` one, usually). Throws ReplayError for user-facing failures. */
export async function replaySpan(span: Span, o: ReplayOptions): Promise<ReplayReport> {
  const req = replayRequest(span, o.projectDir);
  const image = await o.world.worldImageVersion().catch(() => null);
  const warnings = driftWarnings(span, {
    policyCommit: o.policyCommit,
    policyId: o.policyId,
    worldImageVersion: image ?? undefined,
  });
  if (span.event_type !== "command_complete")
    warnings.push(`span is a ${span.event_type} event; replaying its command anyway`);
  if (!span.replay_context) warnings.push("span has no replay_context: PATH, umask and locale are the world's defaults");
  const started = performance.now();
  const res = await o.world.execute(req);
  const duration = performance.now() - started;
  const fs = compareFsDiff(span, res.fs_diff, req.cwd, o.topN ?? 10);
  if (!fs.compared) warnings.push("original span has no fs diff: compared the exit code only");
  const original = span.exit ?? null;
  const exitMatch = original === res.exit;
  const report: ReplayReport = {
    span_id: span.span_id,
    reproduced: exitMatch && fs.match,
    cmd: span.cmd!,
    exit: { original, replay: res.exit, match: exitMatch },
    fs_diff: fs,
    warnings,
    world_id: res.world_id,
    output: outputOf(res),
  };
  if (o.record !== false) {
    const id = newSpanId();
    appendSpanSync(
      {
        ts: new Date().toISOString(),
        event_type: "replay",
        session_id: o.sessionId ?? span.session_id,
        span_id: id,
        component: "shell",
        world_id: res.world_id,
        agent_id: span.agent_id,
        cwd: req.cwd,
        cmd: span.cmd,
        exit: res.exit,
        scopes_used: res.scopes_used,
        ...(res.fs_diff ? { fs_diff: res.fs_diff } : {}),
        duration_ms: Math.round(duration * 1000) / 1000,
        replay_of: span.span_id,
      },
      o.tracePath ? { path: o.tracePath } : {},
    );
    report.replay_span_id = id;
  }
  return report;
}

const OUTPUT_CUT = 4096;
function outputOf(res: ExecuteResponse): NonNullable<ReplayReport["output"]> {
  const out = Buffer.from(res.stdout_b64, "base64").toString("utf8");
  const err = Buffer.from(res.stderr_b64, "base64").toString("utf8");
  return { stdout: out.slice(0, OUTPUT_CUT), stderr: err.slice(0, OUTPUT_CUT), truncated: out.length > OUTPUT_CUT || err.length > OUTPUT_CUT };
}

/** Human report: what matched, what differed, the warnings (and, verbose, the re-run's output). */
export function formatReplayReport(r: ReplayReport, verbose = false): string {
  const ok = (b: boolean) => (b ? "match " : "DIFFER");
  const lines: string[] = [];
  for (const w of r.warnings) lines.push(`⚠️  ${w}`);
  lines.push(`replay of ${r.span_id}: ${r.reproduced ? "REPRODUCED" : "NOT REPRODUCED"}`);
  lines.push(`  cmd      ${r.cmd}`);
  lines.push(`  exit     ${ok(r.exit.match)}  original ${r.exit.original ?? "none"}, replay ${r.exit.replay}`);
  if (!r.fs_diff.compared) lines.push(`  fs diff  not compared (original: ${r.fs_diff.original_summary}; replay: ${r.fs_diff.replay_summary})`);
  else {
    lines.push(`  fs diff  ${ok(r.fs_diff.match)}  original ${r.fs_diff.original_summary}; replay ${r.fs_diff.replay_summary}`);
    if (r.fs_diff.tree_hash.original || r.fs_diff.tree_hash.replay)
      lines.push(`  tree     original ${r.fs_diff.tree_hash.original ?? "-"}, replay ${r.fs_diff.tree_hash.replay ?? "-"}`);
    for (const k of ["writes", "mods", "deletes"] as const) {
      for (const p of r.fs_diff.only_in_original[k]) lines.push(`    - ${k.slice(0, -1).padEnd(6)} ${p}   (original only)`);
      for (const p of r.fs_diff.only_in_replay[k]) lines.push(`    + ${k.slice(0, -1).padEnd(6)} ${p}   (replay only)`);
    }
  }
  if (verbose) {
    if (r.world_id) lines.push(`  world    ${r.world_id} (fresh, isolated)`);
    if (r.replay_span_id) lines.push(`  recorded as span ${r.replay_span_id}`);
    if (r.output) {
      const block = (name: string, text: string) => {
        if (text === "") return;
        lines.push(`  ${name}`);
        for (const l of text.replace(/\n$/, "").split("\n")) lines.push(`    | ${l}`);
      };
      block("stdout", r.output.stdout);
      block("stderr", r.output.stderr);
      if (r.output.truncated) lines.push("    (output cut at 4 KiB)");
    }
  }
  return lines.join("\n");
}

/**
 * `replay --policy FILE`: "would this policy have allowed it?" for recorded spans, without
 * executing anything. The broker's evaluate is passed in (src/broker), so this module has
 * no dependency on the policy engine.
 */
export interface PolicyDecision {
  decision: "allow" | "deny" | "isolate" | "approve";
  reason?: string;
  pattern?: string;
}
export type PolicyEvaluate = (cmd: string, cwd: string) => PolicyDecision;

export function checkSpansAgainstPolicy(spans: Span[], evaluate: PolicyEvaluate): PolicyCheckResult[] {
  const out: PolicyCheckResult[] = [];
  const seen = new Set<string>();
  // one verdict per command: the complete line when present, else start / denied lines
  const byId = new Map<string, Span>();
  for (const s of spans) {
    if (s.cmd === undefined) continue;
    if (!["command_complete", "command_start", "policy_denied", "policy_violation", "builtin_command"].includes(s.event_type)) continue;
    const prev = byId.get(s.span_id);
    if (!prev || s.event_type === "command_complete" || s.event_type === "policy_denied") byId.set(s.span_id, s);
  }
  for (const s of byId.values()) {
    if (seen.has(s.span_id)) continue;
    seen.add(s.span_id);
    const cwd = s.replay_context?.cwd ?? s.cwd ?? "/";
    const d = evaluate(s.cmd!, cwd);
    out.push({
      span_id: s.span_id,
      ts: s.ts,
      cmd: s.cmd!,
      cwd,
      decision: d.decision,
      ...(d.reason !== undefined ? { reason: d.reason } : {}),
      ...(d.pattern !== undefined ? { pattern: d.pattern } : {}),
      recorded: s.event_type === "policy_denied" ? "denied" : "ran",
    });
  }
  return out;
}
