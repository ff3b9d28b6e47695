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
export const REASON_UNKNOWN = "Command runs code the policy cannot check";

/**
 * docs/POLICY.md "Unknown code": a command whose code or name the broker cannot see before it
 * runs (a shell reading a pipe, `bash -c "$X"`, `$(…) args`, a brace expansion too large to
 * check) could run a denied command, so a non-empty deny list denies it; an allowlist never
 * covers it. It is never matched against `isolated` or `require_approval` (that would isolate
 * or prompt every `"$EDITOR" file`).
 */
function unknownDenial(a: Analysis, policy: CompiledPolicy): Decision | null {
  if (policy.rules.denied.size === 0) return null;
  if (a.tooBig)
    return { kind: "deny", reason: `${REASON_UNKNOWN}: a brace expansion makes more than 10000 words, so it could run a denied command`, pattern: null, rule: "commands.denied" };
  const u = a.units.find((x) => x.unknown !== null);
  if (!u) return null;
  return { kind: "deny", reason: `${REASON_UNKNOWN}: ${u.unknown}, so it could run a denied command`, pattern: null, rule: "commands.denied", sub_command: u.text };
}

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
  return unknownDenial(a, policy) ?? { kind: "allow" };
}

function decideOn(a: Analysis, cmd: string, cwd: string, policy: CompiledPolicy): Decision {
  const { rules, doc } = policy;
  if (a.tooDeep)
    return { kind: "deny", reason: "Command nesting too deep to evaluate (more than 32 levels)", pattern: null, rule: "commands.denied" };

  const denied = rules.denied.firstMatch(a);
  if (denied)
    return { kind: "deny", reason: REASON_DENIED, pattern: denied.pattern.source, rule: "commands.denied", sub_command: denied.unit.text };
  const unknown = unknownDenial(a, policy);
  if (unknown) return unknown;

  if (!doc.commands.allow_shell_operators && (a.operators || a.redirections))
    return {
      kind: "deny",
      reason: "Shell operators, substitutions and redirections are not allowed (commands.allow_shell_operators: false)",
      pattern: null,
      rule: "commands.allow_shell_operators",
    };

  if (rules.allowed.size > 0) {
    if (a.tooBig) return { kind: "deny", reason: `${REASON_NOT_ALLOWED}: a brace expansion makes more than 10000 words`, pattern: null, rule: "commands.allowed" };
    const u = rules.allowed.firstUncovered(a);
    if (u) {
      const why = u.unknown ?? (u.globs ? "its command name is a glob, which could match any name" : null);
      return { kind: "deny", reason: `${REASON_NOT_ALLOWED}: ${u.text}${why ? ` (${why})` : ""}`, pattern: null, rule: "commands.allowed", sub_command: u.text };
    }
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
