/**
 * decideForCli(): what the CLI does with a command before running it. Applies the mode
 * (observe logs a would-deny and runs; enforce blocks), the approval cache and, on a TTY, the
 * approval prompt; builds the policy events for the trace; never hangs without a TTY.
 */
import { join } from "node:path";
import type { ApprovalChoice, Decision, FsDiff, PolicyEvent, Restriction } from "../contract/index.ts";
import { ApprovalStore } from "./approvals.ts";
import type { CompiledPolicy } from "./compile.ts";
import { evaluate } from "./evaluate.ts";
import { loadEffectivePolicySync, PolicyError, substrateDir, type LoadedPolicy } from "./load.ts";
import { promptApproval, summarizeDiff } from "./prompt.ts";

export interface CliDecisionInput {
  cmd: string;
  cwd: string;
  /** is stdin a terminal (approval prompts need one) */
  isTTY: boolean;
  stdin: NodeJS.ReadableStream;
  stderr: { write(s: string): unknown };
  /** home directory (tests); default $HOME */
  home?: string;
  /** default $SUBSTRATE_SESSION_ID */
  sessionId?: string;
  /** `--require-approval`: every command needs approval (unless auto-approved) */
  requireApproval?: boolean;
  /** a policy already loaded (e.g. by a long-lived PolicyBroker); default: load for cwd */
  loaded?: LoadedPolicy;
  /** dry run in an isolated overlay world, for the approval prompt's diff preview */
  dryRun?: (cmd: string) => Promise<FsDiff>;
  /** approval cache; default ~/.substrate/approvals.json */
  store?: ApprovalStore;
  component?: "shell" | "shim" | "api";
}

export interface CliDecision {
  action: "run" | "run_isolated" | "deny";
  /** the policy's mode (observe never blocks) */
  mode?: "observe" | "enforce";
  /** set when action is "deny": 126 (policy) or 2 (the policy itself is invalid) */
  exitCode?: number;
  /** what was printed to stderr, if anything */
  message?: string;
  policy_id: string;
  policy_commit?: string;
  restrictions?: Restriction[];
  /** the raw broker decision (before mode and approvals) */
  decision?: Decision;
  /** for the trace: policy_denied / policy_violation / approval */
  events: PolicyEvent[];
  /** the compiled policy in force (absent when it could not be loaded): feeds the WorldSpec */
  policy?: CompiledPolicy;
}

const sessionOf = (i: { sessionId?: string }): string | null => i.sessionId ?? process.env.SUBSTRATE_SESSION_ID ?? null;

export function deniedMessage(policyId: string, reason: string, pattern: string | null): string {
  return `substrate: denied by policy ${policyId}: ${reason}${pattern !== null ? ` (pattern: ${pattern})` : ""}`;
}

export async function decideForCli(input: CliDecisionInput): Promise<CliDecision> {
  let loaded: LoadedPolicy;
  try {
    loaded = input.loaded ?? loadEffectivePolicySync(input.cwd, input.home !== undefined ? { home: input.home } : {});
  } catch (e) {
    if (!(e instanceof PolicyError)) throw e;
    // fail closed: a one-shot CLI has no last good policy in memory
    const message = `${e.format()}\nsubstrate: refusing to run commands until the policy is fixed (check with \`substrate policy validate\`)`;
    input.stderr.write(`${message}\n`);
    return { action: "deny", exitCode: 2, message, policy_id: "unknown", events: [] };
  }
  // a .substrate-profile that was not obeyed, or a selection that could not be recorded (issue 14 item 4)
  if (loaded.source.selection?.notice) input.stderr.write(`${loaded.source.selection.notice}\n`);
  let policy: CompiledPolicy = loaded.policy;
  if (input.requireApproval && !policy.doc.approval.require_approval)
    policy = { ...policy, doc: { ...policy.doc, approval: { ...policy.doc.approval, require_approval: true } } };

  const sessionId = sessionOf(input);
  const base = {
    command: input.cmd,
    policy_id: policy.id,
    cwd: input.cwd,
    component: input.component ?? "shell",
    policy_commit: loaded.commit,
    ...(sessionId !== null ? { session_id: sessionId } : {}),
  } as const;
  const ts = (): string => new Date().toISOString();
  const out = (o: Omit<CliDecision, "policy_id" | "policy_commit">): CliDecision => ({ policy_id: policy.id, policy_commit: loaded.commit, mode: policy.mode, policy, ...o });

  // Every command tells the approval cache which policy is in force, so that a session that
  // moves into another profile loses its session approvals even if no approval is needed there.
  const store = input.store ?? new ApprovalStore(join(substrateDir(input.home !== undefined ? { home: input.home } : {}), "approvals.json"));
  store.noteSession(sessionId, policy.id, policy.hash);

  const d = evaluate(input.cmd, input.cwd, policy);
  switch (d.kind) {
    case "allow":
      return out({ action: "run", decision: d, events: [] });
    case "allow_with_restrictions":
      return out({ action: "run_isolated", restrictions: d.restrictions, decision: d, events: [] });
    case "deny": {
      if (policy.mode === "observe")
        return out({ action: "run", decision: d, events: [{ ...base, ts: ts(), event_type: "policy_violation", reason: d.reason, pattern: d.pattern, would: "deny" }] });
      const message = deniedMessage(policy.id, d.reason, d.pattern);
      input.stderr.write(`${message}\n`);
      return out({ action: "deny", exitCode: 126, message, decision: d, events: [{ ...base, ts: ts(), event_type: "policy_denied", reason: d.reason, pattern: d.pattern }] });
    }
    case "approval_required": {
      // observe mode never asks — unless the user asked for approvals with --require-approval
      if (policy.mode === "observe" && !input.requireApproval)
        return out({
          action: "run",
          decision: d,
          events: [{ ...base, ts: ts(), event_type: "policy_violation", reason: d.reason, pattern: d.pattern, would: "approval_required" }],
        });
      const approval = (reason: ApprovalChoice, source: "prompt" | "cache" | "auto_approve" | "non_interactive"): PolicyEvent => ({
        ...base,
        ts: ts(),
        event_type: "approval",
        reason,
        source,
      });
      const deny = (reason: string, events: PolicyEvent[], extra = ""): CliDecision => {
        const message = deniedMessage(policy.id, reason, d.pattern) + extra;
        input.stderr.write(`${message}\n`);
        return out({ action: "deny", exitCode: 126, message, decision: d, events: [...events, { ...base, ts: ts(), event_type: "policy_denied", reason, pattern: d.pattern }] });
      };
      const cached = store.lookup(d.key, policy.hash, sessionId);
      if (cached) return out({ action: "run", decision: d, events: [approval(cached, "cache")] });
      if (!policy.doc.approval.interactive)
        return deny(`${d.reason}; approval.interactive is false, so it cannot be approved`, [approval("deny", "non_interactive")]);
      if (!input.isTTY)
        return deny(
          `${d.reason}, and stdin is not a terminal to ask on`,
          [approval("deny", "non_interactive")],
          "\n  hint: run it from an interactive terminal, or add a matching pattern to approval.auto_approve",
        );
      let preview: string | undefined;
      if (input.dryRun) {
        try {
          preview = summarizeDiff(await input.dryRun(input.cmd));
        } catch (e) {
          preview = `preview unavailable: ${(e as Error).message.split("\n")[0]}`;
        }
      }
      const choice = await promptApproval({
        stdin: input.stdin,
        stderr: input.stderr,
        command: input.cmd,
        policyId: policy.id,
        policyFile: loaded.source.file,
        reason: d.reason,
        pattern: d.pattern,
        ...(preview !== undefined ? { preview } : {}),
      });
      if (choice === "deny") return deny("User denied approval", [approval("deny", "prompt")]);
      if (choice === "session" || choice === "always") store.record(d.key, policy.hash, choice, sessionId);
      return out({ action: "run", decision: d, events: [approval(choice, "prompt")] });
    }
  }
}

/**
 * A `run_isolated` decision when no world can run it (world disabled or unavailable): enforce
 * mode refuses (126: running it on the host would ignore the policy), observe mode warns and
 * lets it run on the host. Returns the exit code to stop with, or null to go on.
 */
export function isolationUnavailable(gate: CliDecision, stderr: { write(s: string): unknown }, why = "no world is available"): number | null {
  if (gate.action !== "run_isolated") return null;
  const mode = gate.mode ?? "enforce";
  const pattern = gate.decision?.kind === "allow_with_restrictions" ? gate.decision.pattern : null;
  if (mode === "enforce") {
    stderr.write(`${deniedMessage(gate.policy_id, `Command must run in an isolated world, and ${why}`, pattern)}\n`);
    return 126;
  }
  stderr.write(`substrate: policy ${gate.policy_id} wants an isolated world for this command (pattern: ${pattern}), but ${why}: running it unisolated (observe mode)\n`);
  return null;
}
