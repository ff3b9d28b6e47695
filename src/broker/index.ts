/**
 * The policy broker (spec sections 2 and 5): what the rest of Substrate calls.
 *
 *   loadEffectivePolicy(cwd)      → the policy in force for a directory (+ source, commit);
 *                                   the selection is recorded host-side per project (issue 14.4)
 *   evaluate(cmd, cwd, policy)    → Decision (pure)
 *   decideForCli({...})           → run / run_isolated / deny, with prompts and events
 *   worldSpecFromPolicy(policy)   → WorldSpecInput for the world backend
 *   PolicyBroker                  → long-lived holder with hot reload
 */
export { loadEffectivePolicy, loadEffectivePolicySync, PolicyError, findProfile, policiesDir, policyFileFor, substrateDir, projectDirFor, compileText, parsePolicyText, validatePolicy, BUILTIN_DEFAULT, PROFILE_FILE, recordProjectPolicy, resolveSelection, projectsDir } from "./load.ts";
export type { LoadedPolicy, LoadOptions, PolicySource, PolicySelection } from "./load.ts";
export type { CompiledPolicy, PolicyIssue } from "./compile.ts";
export { evaluate, quickCheck, approvalKey } from "./evaluate.ts";
export { decideForCli, deniedMessage, isolationUnavailable } from "./decide.ts";
export type { CliDecision, CliDecisionInput } from "./decide.ts";
export { worldSpecFromPolicy } from "./world-spec.ts";
export { PolicyBroker, RELOAD_STAMP } from "./reload.ts";
export type { ReloadResult, BrokerOptions } from "./reload.ts";
export { ApprovalStore } from "./approvals.ts";
export { summarizeDiff } from "./prompt.ts";
export { DEFAULT_POLICY_YAML } from "./default-policy.ts";
export { policyEventToSpan, recordPolicyEvents } from "./events.ts";
export { ApiApprovals } from "./api.ts";
export type { ApiDecision } from "./api.ts";
