/**
 * `substrate replay <span_id> [--verbose] [--json] [--top N]`: re-run a recorded command in a
 * fresh isolated world (recorded cwd, PATH, umask, locale) and compare exit code and fs diff.
 * Exit 0 when reproduced, 1 when not (the report says what differs), 2 unknown span,
 * 3 world unavailable, 4 not replayable (secrets were redacted from the command).
 *
 * `substrate replay [<span_id>] --policy FILE [--since TS] [--json]`: would FILE have allowed
 * the recorded command(s)? Nothing is executed. Exit 0 when none would be denied, 126 when
 * at least one would.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { defineCommand } from "citty";
import type { Decision } from "../contract/policy.ts";
import type { Span } from "../contract/index.ts";
import type { PolicyDecision } from "../trace/index.ts";
import { isSpanId } from "../contract/ids.ts";
import { CliError, ExitCode } from "./_errors.ts";
import { getGlobals } from "./_globals.ts";

const say = (line: string) => process.stderr.write(`substrate: ${line}\n`);

export const decisionOf = (d: Decision): PolicyDecision => {
  switch (d.kind) {
    case "deny":
      return { decision: "deny", reason: d.reason, ...(d.pattern ? { pattern: d.pattern } : {}) };
    case "allow_with_restrictions":
      return { decision: "isolate", reason: `restrictions: ${d.restrictions.join(", ")}`, ...(d.pattern ? { pattern: d.pattern } : {}) };
    case "approval_required":
      return { decision: "approve", reason: d.reason, ...(d.pattern ? { pattern: d.pattern } : {}) };
    default:
      return { decision: "allow" };
  }
};

async function policyWhatIf(args: { span?: string; policy: string; since?: string; json: boolean; path: string }): Promise<void> {
  const { readSpans, checkSpansAgainstPolicy } = await import("../trace/index.ts");
  const { compileText, evaluate, PolicyError, projectDirFor } = await import("../broker/index.ts");
  const file = resolve(args.policy);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new CliError(ExitCode.USAGE, `cannot read policy ${file}: ${(e as Error).message}`, "pass a policy file, e.g. --policy ~/.substrate/policies/default.yaml");
  }
  let policy;
  try {
    policy = compileText(text, file, { home: process.env.HOME ?? "/", project: projectDirFor(process.cwd()) });
  } catch (e) {
    if (e instanceof PolicyError) {
      process.stderr.write(`${e.format()}\n`);
      throw new CliError(ExitCode.USAGE, `policy ${file} is invalid`, "fix the errors above (`substrate policy validate FILE`)");
    }
    throw e;
  }
  let spans: Span[];
  if (args.span) {
    spans = await readSpans({ path: args.path, span_id: args.span });
    if (spans.length === 0) throw new CliError(ExitCode.USAGE, `span ${args.span} is not in ${args.path}`, "list recent spans with `substrate trace --last 20`");
  } else {
    if (args.since === undefined) throw new CliError(ExitCode.USAGE, "--policy needs a span id or --since TS", "example: substrate replay --policy new.yaml --since 2026-01-01T00:00:00Z");
    if (Number.isNaN(Date.parse(args.since))) throw new CliError(ExitCode.USAGE, `--since expects an ISO 8601 time, got "${args.since}"`, "example: --since 2026-01-01T00:00:00Z");
    spans = await readSpans({ path: args.path, since: args.since });
  }
  const results = checkSpansAgainstPolicy(spans, (cmd, cwd) => decisionOf(evaluate(cmd, cwd, policy)));
  const denied = results.filter((r) => r.decision === "deny");
  if (args.json) console.log(JSON.stringify({ policy: { id: policy.id, file }, results }, null, 2));
  else {
    for (const r of results) {
      const note = r.decision === "deny" ? `  (${r.reason}${r.pattern ? `; pattern: ${r.pattern}` : ""})` : r.reason ? `  (${r.reason})` : "";
      const change = (r.decision === "deny") !== (r.recorded === "denied") ? `  [was ${r.recorded}]` : "";
      console.log(`${r.decision.toUpperCase().padEnd(8)} ${r.span_id}  ${r.cmd}${note}${change}`);
    }
    console.log(`${results.length} commands checked against policy ${policy.id} (${file}): ${denied.length} would be denied`);
  }
  process.exitCode = denied.length ? ExitCode.DENIED : ExitCode.OK;
}

export default defineCommand({
  meta: { name: "replay", description: "Re-run a recorded span in a fresh isolated world and compare exit code and fs diff" },
  args: {
    span: { type: "positional", required: false, description: "span id (spn_…)" },
    verbose: { type: "boolean", description: "more detail (world id, replay span, context)" },
    json: { type: "boolean", description: "the replay report as JSON" },
    top: { type: "string", description: "differing paths shown per kind (default 10)", valueHint: "N" },
    record: { type: "boolean", default: true, description: "write a `replay` span (--no-record: don't)" },
    policy: { type: "string", description: "don't execute: would this policy file have allowed it?", valueHint: "FILE" },
    since: { type: "string", description: "with --policy: every span since this time (ISO 8601)", valueHint: "TS" },
  },
  async run({ args }) {
    const trace = await import("../trace/index.ts");
    const json = Boolean(args.json) || getGlobals().json;
    const path = trace.traceFilePath();
    const id = args.span === undefined ? undefined : String(args.span);
    if (id !== undefined && !isSpanId(id))
      throw new CliError(ExitCode.USAGE, `"${id}" is not a span id (expected spn_<uuidv7>)`, "list recent spans with `substrate trace --last 20`");

    if (args.policy !== undefined) return policyWhatIf({ span: id, policy: String(args.policy), since: args.since as string | undefined, json, path });
    if (id === undefined) throw new CliError(ExitCode.USAGE, "replay needs a span id", "list recent spans with `substrate trace --last 20`");
    const top = args.top === undefined ? 10 : Number(args.top);
    if (!Number.isInteger(top) || top < 0) throw new CliError(ExitCode.USAGE, `--top expects a number, got "${args.top}"`, "example: --top 20");

    const span = await trace.findSpan(id, path);
    if (!span) throw new CliError(ExitCode.USAGE, `span ${id} is not in ${path} (or its rotated files)`, "list recent spans with `substrate trace --last 20`; SUBSTRATE_TRACE selects another trace file");

    // The policy in force now for the span's directory: its commit tells us about drift.
    let policyCommit: string | null | undefined;
    let policyId: string | undefined;
    try {
      const { loadEffectivePolicySync } = await import("../broker/index.ts");
      const lp = loadEffectivePolicySync(span.replay_context?.cwd ?? span.cwd ?? process.cwd());
      policyCommit = lp.commit;
      policyId = lp.policy.id;
    } catch (e) {
      say(`cannot load the current policy to check for drift: ${(e as Error).message.split("\n")[0]}`);
    }

    // A fresh isolated world through the host pipeline (src/run/): the policy in force gates
    // the command again and builds its world (limits, allowlist) as for `substrate -c`; replay
    // adds only `reuse_session: false` and never falls back to the host.
    const { effectiveConfig } = await import("../config.ts");
    const cfg = effectiveConfig({ worldFlag: getGlobals().world });
    if (!cfg.world_enabled)
      throw new CliError(ExitCode.UNAVAILABLE, "replay needs the world, and it is disabled here", "enable it (remove --no-world / SUBSTRATE_WORLD=disabled, or set world.enabled = true in config.toml)");
    const { runIntent } = await import("../run/index.ts");
    const { hostBackend } = await import("../world/select.ts");
    const { WorldUnavailable } = await import("../world/backend.ts");
    const { AgentApiError, AgentUnreachable } = await import("../api/client.ts");
    const world: import("../trace/index.ts").ReplayWorld = {
      execute: async (req) => {
        const out = await runIntent({
          what: { cmd: req.cmd! },
          ...(req.cwd ? { cwd: req.cwd } : {}),
          // the recorded PATH/locale; the replay belongs to the original span's session. The
          // caller's own settings (HOME, SUBSTRATE_*: which agent serves it, its trace) come from
          // this process — without them the pipeline reached (or started) the default agent.
          env: { ...settingsEnv(process.env), ...req.env, SUBSTRATE_SESSION_ID: span.session_id },
          agentId: req.agent_id,
          io: "buffered",
          component: "shell",
          asker: "tty",
          isolated: true,
          worldFlag: true,
          worldOverride: { reuse_session: false },
        });
        if (out.ran === "denied" || out.ran === "approval_required")
          throw new CliError(out.exit, `the policy in force refuses to replay ${id}${out.message ? "" : ""}`, "see the policy message above (`substrate policy show`)");
        return {
          exit: out.exit,
          span_id: out.agent_span_id ?? out.span_id!,
          stdout_b64: Buffer.from(out.stdout ?? new Uint8Array()).toString("base64"),
          stderr_b64: Buffer.from(out.stderr ?? new Uint8Array()).toString("base64"),
          scopes_used: out.scopes_used ?? [],
          world_id: out.world_id!,
          ...(out.fs_diff ? { fs_diff: out.fs_diff } : {}),
        };
      },
      worldImageVersion: async () => {
        const ready = await hostBackend(cfg, process.env).ensureReady({ start: false });
        return trace.worldImageVersion((await ready.client.capabilities(5000)).agent);
      },
    };
    let report;
    try {
      report = await trace.replaySpan(span, { world, policyCommit, policyId, topN: top, record: args.record !== false, tracePath: path });
    } catch (e) {
      if (e instanceof trace.ReplayError) throw new CliError(e.exitCode, e.message, e.hint);
      if (e instanceof WorldUnavailable) throw new CliError(ExitCode.UNAVAILABLE, `replay needs the world: ${e.message}`, e.hint);
      if (e instanceof AgentUnreachable) throw new CliError(ExitCode.UNAVAILABLE, e.message, "run `substrate world doctor`");
      if (e instanceof AgentApiError)
        throw new CliError(e.code === "unsupported" ? ExitCode.UNSUPPORTED : ExitCode.UNAVAILABLE, `the world could not replay the command: ${e.message}`, e.hint);
      if (e instanceof CliError && e.exitCode !== ExitCode.DENIED) throw new CliError(e.exitCode, `the world could not replay the command: ${e.message}`, e.hint);
      throw e;
    }
    if (json) console.log(JSON.stringify(report, null, 2));
    else {
      const text = trace.formatReplayReport(report, Boolean(args.verbose));
      // drift warnings go to stderr, the report to stdout
      for (const line of text.split("\n")) (line.startsWith("⚠️") ? process.stderr : process.stdout).write(`${line}\n`);
    }
    process.exitCode = report.reproduced ? ExitCode.OK : ExitCode.INTERNAL;
  },
});

/** The caller's settings from an environment: HOME and SUBSTRATE_* (not the span context). */
function settingsEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined || k === "SUBSTRATE_SESSION_ID" || k === "SUBSTRATE_SPAN_ID") continue;
    if (k === "HOME" || k.startsWith("SUBSTRATE_")) out[k] = v;
  }
  return out;
}
