/**
 * The gate: one policy decision per command, whatever the entry point, with three
 * interchangeable askers (src/run/intent.ts AskerKind). The decisions themselves are the
 * broker's (evaluate, the approval cache, the mode); this module only picks the asker and
 * writes the policy events under the command's span context — so the events and the command
 * span of one command share one session id.
 *
 *   tty        broker/decide.ts decideForCli: terminal prompt with a diff preview
 *   api        broker/api.ts ApiApprovals: 409 + a pending approval the caller answers
 *   deny-list  broker/evaluate.ts quickCheck: the deny list only (shims)
 */
import type { Decision, PolicyEvent, ApprovalRequest } from "../contract/policy.ts";
import type { FsDiff } from "../contract/world.ts";
import type { CompiledPolicy } from "../broker/compile.ts";
import type { LoadedPolicy } from "../broker/load.ts";
import type { ApiApprovals } from "../broker/api.ts";
import type { AskerKind } from "./intent.ts";
import type { SpanContext } from "../trace/span.ts";

export interface GateInput {
  cmd: string;
  argv?: string[];
  cwd: string;
  asker: AskerKind;
  component: "shell" | "shim" | "api";
  requireApproval?: boolean;
  loaded?: LoadedPolicy;
  /** the user's home for policies and approvals (tests); default $HOME */
  home?: string;
  /** tty: the approval prompt's preview */
  dryRun?: (cmd: string) => Promise<FsDiff>;
  /** api: the pending-approval holder (the proxy's); default one per process */
  approvals?: ApiApprovals;
  stderr: { write(s: string): unknown };
  stdin?: NodeJS.ReadableStream;
  isTTY?: boolean;
  span: SpanContext;
  /** write the policy events to the trace (default true); false: the caller writes `events` (agent-gate.ts, for the CLI's fast path) */
  record?: boolean;
}

export interface GateResult {
  action: "run" | "run_isolated" | "deny" | "approval_required";
  /** deny: 126 (policy) or 2 (the policy itself is invalid) */
  exitCode?: number;
  message?: string;
  hint?: string;
  approval?: ApprovalRequest;
  mode?: "observe" | "enforce";
  policy_id: string;
  policy_commit?: string;
  decision?: Decision;
  /** the compiled policy in force: feeds plan()'s world spec */
  policy?: CompiledPolicy;
  events: PolicyEvent[];
}

let processApprovals: ApiApprovals | undefined;
/** The api asker's pending approvals for this process (the MCP server, the bash entry). */
export async function defaultApprovals(): Promise<ApiApprovals> {
  if (processApprovals) return processApprovals;
  const [{ ApiApprovals }, { ApprovalStore }, { substrateDir }, { join }] = await Promise.all([
    import("../broker/api.ts"),
    import("../broker/approvals.ts"),
    import("../broker/load.ts"),
    import("node:path"),
  ]);
  return (processApprovals ??= new ApiApprovals(new ApprovalStore(join(substrateDir(), "approvals.json"))));
}

export async function gate(i: GateInput): Promise<GateResult> {
  const r = await decide(i);
  if (i.record !== false) await recordEvents(r.events, i.span, i.stderr);
  return r;
}

async function decide(i: GateInput): Promise<GateResult> {
  if (i.asker === "tty") {
    const { decideForCli } = await import("../broker/decide.ts");
    const d = await decideForCli({
      cmd: i.cmd,
      cwd: i.cwd,
      isTTY: i.isTTY ?? false,
      stdin: i.stdin ?? process.stdin,
      stderr: i.stderr,
      sessionId: i.span.session_id,
      requireApproval: i.requireApproval === true,
      component: i.component,
      ...(i.home !== undefined ? { home: i.home } : {}),
      ...(i.loaded ? { loaded: i.loaded } : {}),
      ...(i.dryRun ? { dryRun: i.dryRun } : {}),
    });
    return { ...d };
  }

  const { loadEffectivePolicySync, PolicyError } = await import("../broker/load.ts");
  let loaded: LoadedPolicy;
  try {
    loaded = i.loaded ?? loadEffectivePolicySync(i.cwd, i.home !== undefined ? { home: i.home } : {});
  } catch (e) {
    if (!(e instanceof PolicyError)) throw e;
    const message = `${e.format()}\nsubstrate: refusing to run commands until the policy is fixed (check with \`substrate policy validate\`)`;
    if (i.asker === "deny-list") i.stderr.write(`${e.format()}\n`);
    else if (i.asker !== "api") i.stderr.write(`${message}\n`);
    return { action: "deny", exitCode: 2, message, hint: "substrate policy validate", policy_id: "unknown", events: [] };
  }
  const p = loaded.policy;
  const common = { policy_id: p.id, policy_commit: loaded.commit, mode: p.mode, policy: p } as const;
  const { deniedMessage } = await import("../broker/decide.ts");

  if (i.asker === "deny-list") {
    const { quickCheck } = await import("../broker/evaluate.ts");
    const d = quickCheck(i.argv ?? ["bash", "-c", i.cmd], i.cwd, p);
    if (d.kind !== "deny") return { ...common, action: "run", decision: d, events: [] };
    const base = { ts: new Date().toISOString(), command: i.cmd, policy_id: p.id, session_id: i.span.session_id, cwd: i.cwd, component: i.component, policy_commit: loaded.commit };
    if (p.mode !== "enforce") return { ...common, action: "run", decision: d, events: [{ ...base, event_type: "policy_violation", reason: d.reason, pattern: d.pattern, would: "deny" }] };
    const message = deniedMessage(p.id, d.reason, d.pattern);
    i.stderr.write(`${message}\n`);
    return { ...common, action: "deny", exitCode: 126, message, decision: d, events: [{ ...base, event_type: "policy_denied", reason: d.reason, pattern: d.pattern }] };
  }

  // api: no prompt; an approval becomes a pending request the caller answers, then retries
  const approvals = i.approvals ?? (await defaultApprovals());
  const d = approvals.decide(i.cmd, i.cwd, loaded, i.span.session_id, i.component === "shell" ? "shell" : "api");
  switch (d.kind) {
    case "run":
      return { ...common, action: "run", events: d.events };
    case "run_isolated":
      return { ...common, action: "run_isolated", events: d.events };
    case "deny":
      // not printed (the API caller gets it in the 403 body)
      return { ...common, action: "deny", exitCode: 126, message: `denied by policy ${p.id}: ${d.reason}`, ...(d.pattern ? { hint: `matched ${d.pattern}` } : {}), events: d.events };
    case "approval_required":
      return { ...common, action: "approval_required", exitCode: 126, message: d.body.error.message, hint: d.body.error.hint, approval: d.body.approval, events: d.events };
  }
}

/**
 * Policy events → spans of the command's context (one session id with its command span); into
 * `tracePath` (default the trace of this process: the fast path's host span names the caller's).
 */
export async function recordEvents(events: readonly PolicyEvent[], span: SpanContext, stderr: { write(s: string): unknown }, tracePath?: string): Promise<void> {
  if (events.length === 0) return;
  try {
    const [{ policyEventToSpan }, { appendSpanSync }] = await Promise.all([import("../broker/events.ts"), import("../trace/writer.ts")]);
    for (const e of events) appendSpanSync(policyEventToSpan({ ...e, session_id: span.session_id }, span.ids()), tracePath ? { path: tracePath } : {});
  } catch (e) {
    stderr.write(`substrate: could not write policy events to the trace: ${(e as Error).message.split("\n")[0]}\n`);
  }
}

/**
 * A `run_isolated` decision when no world can run it (world disabled or unavailable): enforce
 * mode refuses (126), observe mode warns and lets it run on the host. The broker's rule.
 */
export async function isolationUnavailable(g: GateResult, stderr: { write(s: string): unknown }, why?: string): Promise<number | null> {
  if (g.action !== "run_isolated") return null;
  const { isolationUnavailable: rule } = await import("../broker/decide.ts");
  return rule({ ...g, action: "run_isolated", events: g.events } as import("../broker/decide.ts").CliDecision, stderr, why);
}
