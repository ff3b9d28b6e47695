/**
 * `substrate shim check -- NAME ARGS…`: the shim fast path (spec `quick_check`): deny list
 * only — no allowlist, isolation or approval prompts (a shim has no world to route to and may
 * run without a terminal). Writes a policy span to the trace; returns the exit status the shim
 * passes on (0 run, 126 denied, 2 broken policy).
 */
import type { PolicyEvent } from "../contract/index.ts";
import { deniedMessage } from "../broker/decide.ts";
import { quickCheck } from "../broker/evaluate.ts";
import { recordPolicyEvents } from "../broker/events.ts";
import { loadEffectivePolicySync, PolicyError } from "../broker/load.ts";

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
  let loaded;
  try {
    loaded = loadEffectivePolicySync(i.cwd, i.home !== undefined ? { home: i.home } : {});
  } catch (e) {
    if (!(e instanceof PolicyError)) throw e;
    i.stderr.write(`${e.format()}\nsubstrate: shim refuses to run ${i.argv[0]} until the policy is fixed (or run it with SHIM_BYPASS=1)\n`);
    return { exitCode: 2 };
  }
  const p = loaded.policy;
  const d = quickCheck(i.argv, i.cwd, p);
  const command = i.argv.join(" ");
  if (d.kind !== "deny") return { exitCode: 0, span: await startSpan(command, i.cwd, env, p.id, loaded.commit) };
  const sessionId = env.SUBSTRATE_SESSION_ID;
  const base = {
    ts: new Date().toISOString(),
    command,
    policy_id: p.id,
    ...(sessionId ? { session_id: sessionId } : {}),
    cwd: i.cwd,
    component: "shim" as const,
    policy_commit: loaded.commit,
  };
  const event: PolicyEvent =
    p.mode === "enforce"
      ? { ...base, event_type: "policy_denied", reason: d.reason, pattern: d.pattern }
      : { ...base, event_type: "policy_violation", reason: d.reason, pattern: d.pattern, would: "deny" };
  await recordPolicyEvents([event], i.stderr);
  if (p.mode !== "enforce") return { exitCode: 0, event, span: await startSpan(command, i.cwd, env, p.id, loaded.commit) };
  i.stderr.write(`${deniedMessage(p.id, d.reason, d.pattern)}\n`);
  return { exitCode: 126, event };
}

/**
 * The shim's span: command_start (component "shim"). The shim then execs the real command, so
 * no command_complete follows (its exit code is never seen); the span id is exported to the
 * command so that nested substrate calls become its children.
 */
async function startSpan(cmd: string, cwd: string, env: Record<string, string | undefined>, policyId: string, commit: string) {
  const { CommandSpan } = await import("../trace/command-span.ts");
  const parent = env.SUBSTRATE_SPAN_ID && /^spn_[0-9a-f-]{36}$/.test(env.SUBSTRATE_SPAN_ID) ? env.SUBSTRATE_SPAN_ID : undefined;
  const span = CommandSpan.start({ cmd, cwd, env, component: "shim", policy_id: policyId, policy_commit: commit, ...(parent ? { parent_span: parent } : {}) });
  const e = span.env;
  return { SUBSTRATE_SPAN_ID: e.SUBSTRATE_SPAN_ID!, SUBSTRATE_SESSION_ID: e.SUBSTRATE_SESSION_ID! };
}
