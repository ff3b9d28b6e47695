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

export async function runShimCheck(i: ShimCheckInput): Promise<{ exitCode: number; event?: PolicyEvent }> {
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
  if (d.kind !== "deny") return { exitCode: 0 };
  const command = i.argv.join(" ");
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
  if (p.mode !== "enforce") return { exitCode: 0, event };
  i.stderr.write(`${deniedMessage(p.id, d.reason, d.pattern)}\n`);
  return { exitCode: 126, event };
}
