/**
 * evaluate(): the broker's pure decision for one command line (no I/O, no mode, no cache).
 *
 * Order (issue 4, spec Broker::evaluate): denied first; then shell operators (when the policy
 * forbids them); then the allowlist when non-empty (EVERY sub-command must be allowed, else
 * `git status; rm -rf ~` would pass as "git"); then isolated; then approval. Observe/enforce
 * and the approval cache are applied on top by decide.ts.
 */
import type { ApprovalKey, Decision, Restriction } from "../contract/policy.ts";
import type { CompiledPolicy } from "./compile.ts";
import { analyze, type Analysis } from "./pattern.ts";

export const REASON_DENIED = "Command explicitly denied";
export const REASON_NOT_ALLOWED = "Command not explicitly allowed";

export function evaluate(cmd: string, cwd: string, policy: CompiledPolicy): Decision {
  const a = analyze(cmd, { HOME: policy.home, PWD: cwd });
  return decideOn(a, cmd, cwd, policy);
}

/** Spec `quick_check`: the shim fast path, deny list only. */
export function quickCheck(argv: readonly string[], cwd: string, policy: CompiledPolicy): Decision {
  // argv is already split by the calling shell: quote each word so the analysis sees exactly it
  const line = argv.map((w) => (w === "" ? "''" : `'${w.replace(/'/g, `'\\''`)}'`)).join(" ");
  const a = analyze(line, { HOME: policy.home, PWD: cwd });
  const m = policy.rules.denied.firstMatch(a);
  if (m) return { kind: "deny", reason: REASON_DENIED, pattern: m.pattern.source, rule: "commands.denied", sub_command: m.unit.text };
  return { kind: "allow" };
}

function decideOn(a: Analysis, cmd: string, cwd: string, policy: CompiledPolicy): Decision {
  const { rules, doc } = policy;
  if (a.tooDeep)
    return { kind: "deny", reason: "Command nesting too deep to evaluate (more than 32 levels)", pattern: null, rule: "commands.denied" };

  const denied = rules.denied.firstMatch(a);
  if (denied)
    return { kind: "deny", reason: REASON_DENIED, pattern: denied.pattern.source, rule: "commands.denied", sub_command: denied.unit.text };

  if (!doc.commands.allow_shell_operators && (a.operators || a.redirections))
    return {
      kind: "deny",
      reason: "Shell operators, substitutions and redirections are not allowed (commands.allow_shell_operators: false)",
      pattern: null,
      rule: "commands.allow_shell_operators",
    };

  if (rules.allowed.size > 0) {
    const u = rules.allowed.firstUncovered(a);
    if (u) return { kind: "deny", reason: `${REASON_NOT_ALLOWED}: ${u.text}`, pattern: null, rule: "commands.allowed", sub_command: u.text };
  }

  const iso = rules.isolated.firstMatch(a);
  if (iso) {
    const restrictions: Restriction[] = ["IsolatedWorld", "OverlayFS"];
    if (doc.world.isolate_network) restrictions.push("NetworkFilter");
    return { kind: "allow_with_restrictions", restrictions, pattern: iso.pattern.source };
  }

  const needs = rules.requireApproval.firstMatch(a);
  if ((needs || doc.approval.require_approval) && (rules.autoApprove.size === 0 || rules.autoApprove.firstUncovered(a) !== null)) {
    return {
      kind: "approval_required",
      reason: needs ? "Command requires approval" : "Policy requires approval for every command (approval.require_approval)",
      pattern: needs ? needs.pattern.source : null,
      key: approvalKey(policy, cwd, cmd),
    };
  }
  return { kind: "allow" };
}

/** Spec ApprovalCacheKey. command_pattern is the exact line (trimmed): approvals never generalize. */
export function approvalKey(policy: CompiledPolicy, cwd: string, cmd: string): ApprovalKey {
  return { policy_id: policy.id, cwd_prefix: cwd, command_pattern: cmd.trim() || cmd };
}
