/**
 * `substrate shim check -- NAME ARGS…`: the shim fast path (spec `quick_check`): the host
 * pipeline's gate with the deny-list asker (src/run/gate.ts) — no allowlist, isolation or
 * approval prompts (a shim has no world to route to and may run without a terminal). Writes
 * the policy event and the shim's command_start under the command's span context; returns
 * the exit status the shim passes on (0 run, 126 denied, 2 broken policy).
 */
import type { PolicyEvent } from "../contract/index.ts";
import { commandLine } from "../run/intent.ts";
import { gate } from "../run/gate.ts";
import { SpanContext } from "../trace/span.ts";

export interface ShimCheckInput {
  argv: string[];
  cwd: string;
  stderr: { write(s: string): unknown };
  home?: string;
  env?: Record<string, string | undefined>;
}

export interface ShimCheckResult {
  exitCode: number;
  event?: PolicyEvent;
  /** when the command may run: its span (command_start written) for the shim to export */
  span?: { SUBSTRATE_SPAN_ID: string; SUBSTRATE_SESSION_ID: string };
}

export async function runShimCheck(i: ShimCheckInput): Promise<ShimCheckResult> {
  const env = i.env ?? process.env;
  const span = SpanContext.fromEnv(env);
  const command = i.argv.join(" ");
  const g = await gate({ cmd: command, argv: i.argv, cwd: i.cwd, asker: "deny-list", component: "shim", ...(i.home !== undefined ? { home: i.home } : {}), stderr: i.stderr, span });
  if (g.action === "deny" && g.exitCode === 2) {
    i.stderr.write(`substrate: shim refuses to run ${i.argv[0]} until the policy is fixed (or run it with SHIM_BYPASS=1)\n`);
    return { exitCode: 2 };
  }
  const event = g.events[0];
  if (g.action === "deny") return { exitCode: g.exitCode ?? 126, ...(event ? { event } : {}) };
  return { exitCode: 0, ...(event ? { event } : {}), span: await startSpan(commandLine({ cmd: command }), i.cwd, env, span, g.policy_id, g.policy_commit) };
}

/**
 * The shim's span: command_start (component "shim"). The shim then execs the real command, so
 * no command_complete follows (its exit code is never seen); the span id is exported to the
 * command so that nested substrate calls become its children.
 */
async function startSpan(cmd: string, cwd: string, env: Record<string, string | undefined>, ctx: SpanContext, policyId: string, commit?: string) {
  const { CommandSpan } = await import("../trace/command-span.ts");
  const span = CommandSpan.start({
    cmd,
    cwd,
    env,
    component: "shim",
    session_id: ctx.session_id,
    ...(ctx.parent_span ? { parent_span: ctx.parent_span } : {}),
    policy_id: policyId,
    ...(commit ? { policy_commit: commit } : {}),
  });
  const e = span.env;
  return { SUBSTRATE_SPAN_ID: e.SUBSTRATE_SPAN_ID!, SUBSTRATE_SESSION_ID: e.SUBSTRATE_SESSION_ID! };
}
