/**
 * Policy broker contract (spec "Policy Schema & Configuration", "2. Broker in the Hot Path",
 * "5. Policy Hot-Reload"): the policy document, the broker's decision, approvals, and the
 * policy events the trace writes.
 *
 * The policy schema is the spec's JSON Schema (field names byte for byte) plus the fields its
 * YAML example uses (`net.dns`, `privacy`) and a few of ours, each marked "ours". Objects are
 * strict: in a security policy a typo (`comands:`, `deny:`) must be an error, not a rule that
 * silently does nothing. `docs/policy.json` is generated from `Policy` (scripts/gen-policy-schema.ts).
 */
import { z } from "zod";
import { DEFAULT_DENY_READ } from "./world.ts";

const Patterns = z.array(z.string().min(1, "a pattern must not be empty"));

export const PolicyMode = z.enum(["observe", "enforce"]);
export type PolicyMode = z.infer<typeof PolicyMode>;

/** `^[a-z0-9-]+$` (spec): also the file name `~/.substrate/policies/<id>.yaml` and the `.substrate-profile` content. */
export const PolicyId = z.string().regex(/^[a-z0-9-]+$/, "expected lowercase letters, digits and '-' (^[a-z0-9-]+$)");

export const PolicyFs = z.strictObject({
  read: z.array(z.string()).default([]),
  write: z.array(z.string()).default([]),
  /** ours (issue 13): hidden in the world (look absent/empty); default: the secrets list. `[]` shows everything */
  deny_read: z.array(z.string()).default([...DEFAULT_DENY_READ]),
  /** ours (issue 13): read-only even under a writable path, added to the built-in list (docs/POLICY.md) */
  read_only: z.array(z.string()).default([]),
});

export const PolicyNet = z.strictObject({
  allowed: z.array(z.string()).default([]),
  /** spec YAML example (not in its JSON Schema): DNS pinning of the world */
  dns: z
    .strictObject({
      pinned: z.boolean().default(true),
      refresh_secs: z.number().int().positive().default(60),
    })
    .optional(),
  egress_budget: z
    .strictObject({
      bytes_per_sec: z.number().int().nonnegative().optional(),
      total_bytes: z.number().int().nonnegative().optional(),
    })
    .optional(),
});

export const PolicyCommands = z.strictObject({
  /** when non-empty, every sub-command of a line must match one of these */
  allowed: Patterns.default([]),
  /** checked first; a denied sub-command denies the whole line */
  denied: Patterns.default([]),
  /** lines with a matching sub-command run in an ephemeral overlay world */
  isolated: Patterns.default([]),
  /** ours: lines with a matching sub-command need an approval (when not auto-approved) */
  require_approval: Patterns.default([]),
  /** ours (spec Broker struct `allow_shell_operators`): false denies `;` `&&` `||` `|` `&` subshells and substitutions */
  allow_shell_operators: z.boolean().default(true),
});

export const PolicyWorld = z.strictObject({
  reuse_session: z.boolean().default(true),
  enable_preload: z.boolean().default(false),
  isolate_network: z.boolean().default(true),
  /** ours (issue 14.1): allow ptrace/process_vm_* in the world, for debuggers (docs/SECURITY.md) */
  allow_ptrace: z.boolean().default(false),
  /** ours (issue 13): a rootless agent's commands run as uid 0 of their user namespace, not as the user */
  root_inside: z.boolean().default(false),
  limits: z
    .strictObject({
      cpu: z.string().regex(/^[0-9]+(\.[0-9]+)?$/, 'expected a CPU count such as "2" or "0.5"').optional(),
      memory: z.string().regex(/^[0-9]+(Ki|Mi|Gi)$/, 'expected a size such as "512Mi" or "2Gi"').optional(),
      /** ours: fork-bomb guard */
      pids: z.number().int().positive().optional(),
    })
    .default({}),
});

export const PolicyApproval = z.strictObject({
  /** false: approvals are never prompted for, an approval-required line is denied */
  interactive: z.boolean().default(true),
  /** lines whose every sub-command matches one of these skip approval */
  auto_approve: Patterns.default([]),
  /** ours (spec Broker struct `require_approval`, CLI `--require-approval`): every line needs approval */
  require_approval: z.boolean().default(false),
});

export const PolicyPrivacy = z.strictObject({
  ignore_paths: z.array(z.string()).default([]),
  hash_code_only: z.boolean().default(true),
  index_user_docs: z.boolean().default(false),
});

/** ours: self-tests evaluated at every load; a failing example rejects the policy. */
export const PolicyExamples = z.strictObject({
  deny: z.array(z.string()).default([]),
  allow: z.array(z.string()).default([]),
  isolate: z.array(z.string()).default([]),
  approve: z.array(z.string()).default([]),
});

export const Policy = z.strictObject({
  id: PolicyId,
  name: z.string(),
  mode: PolicyMode.default("observe"),
  fs: PolicyFs.default({ read: [], write: [], deny_read: [...DEFAULT_DENY_READ], read_only: [] }),
  net: PolicyNet.default({ allowed: [] }),
  commands: PolicyCommands.default({
    allowed: [],
    denied: [],
    isolated: [],
    require_approval: [],
    allow_shell_operators: true,
  }),
  world: PolicyWorld.default({ reuse_session: true, enable_preload: false, isolate_network: true, allow_ptrace: false, root_inside: false, limits: {} }),
  approval: PolicyApproval.default({ interactive: true, auto_approve: [], require_approval: false }),
  privacy: PolicyPrivacy.optional(),
  examples: PolicyExamples.optional(),
});
export type Policy = z.infer<typeof Policy>;
export type PolicyInput = z.input<typeof Policy>;

// ---------------------------------------------------------------------------------------------
// Decisions

/** Spec `RestrictionType`. */
export const Restriction = z.enum(["IsolatedWorld", "OverlayFS", "NetworkFilter"]);
export type Restriction = z.infer<typeof Restriction>;

/** Which rule produced a deny. */
export const DenyRule = z.enum([
  "commands.denied",
  "commands.allowed",
  "commands.allow_shell_operators",
  "approval",
]);
export type DenyRule = z.infer<typeof DenyRule>;

export const ApprovalChoice = z.enum(["once", "session", "always", "deny"]);
export type ApprovalChoice = z.infer<typeof ApprovalChoice>;

/** Spec `ApprovalCacheKey {policy_id, cwd_prefix, command_pattern}`. */
export const ApprovalKey = z.strictObject({
  policy_id: PolicyId,
  /** absolute; the approval holds in this directory and below */
  cwd_prefix: z.string().startsWith("/"),
  /** the normalized command line (words re-quoted, single spaces) */
  command_pattern: z.string().min(1),
});
export type ApprovalKey = z.infer<typeof ApprovalKey>;

/**
 * A line that needs a human decision. The CLI prompts for it; over the agent API it is the body
 * of a 409 `approval_required` error (`ApprovalRequiredBody`) and is answered with
 * `ApprovalAnswer` on the request_scopes/approve endpoint, then the execute is retried.
 */
export const ApprovalRequest = z.strictObject({
  /** `apr_<uuidv7>`: names this request when it is answered over the API */
  approval_id: z.string().regex(/^apr_[0-9a-f-]{36}$/, "expected apr_<uuidv7>"),
  policy_id: PolicyId,
  command: z.string(),
  cwd: z.string().startsWith("/"),
  reason: z.string(),
  /** the pattern that required approval; null when `approval.require_approval` covers every line */
  pattern: z.string().nullable(),
  key: ApprovalKey,
  choices: z.array(ApprovalChoice).default(["once", "session", "always", "deny"]),
  /** filled in when a dry run in an isolated overlay world was possible: "writes 134 files under node_modules, ..." */
  diff_preview: z.string().optional(),
});
export type ApprovalRequest = z.infer<typeof ApprovalRequest>;

export const ApprovalAnswer = z.strictObject({
  approval_id: z.string().regex(/^apr_[0-9a-f-]{36}$/, "expected apr_<uuidv7>"),
  choice: ApprovalChoice,
});
export type ApprovalAnswer = z.infer<typeof ApprovalAnswer>;

/** 409 body: the usual error envelope plus the request to answer. */
export const ApprovalRequiredBody = z.strictObject({
  error: z.strictObject({
    code: z.literal("approval_required"),
    message: z.string().min(1),
    hint: z.string().optional(),
  }),
  approval: ApprovalRequest,
});
export type ApprovalRequiredBody = z.infer<typeof ApprovalRequiredBody>;

/** `evaluate()` result (spec `Decision`, plus the approval state the spec keeps inside evaluate). */
export const Decision = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("allow") }),
  z.strictObject({
    kind: z.literal("allow_with_restrictions"),
    restrictions: z.array(Restriction).min(1),
    /** the `commands.isolated` pattern that matched */
    pattern: z.string(),
  }),
  z.strictObject({
    kind: z.literal("deny"),
    reason: z.string(),
    /** the policy pattern that matched, as written in the file; null for allowlist/operator denials */
    pattern: z.string().nullable(),
    rule: DenyRule,
    /** the sub-command that triggered it (e.g. inside `bash -c "..."`) */
    sub_command: z.string().optional(),
  }),
  z.strictObject({
    kind: z.literal("approval_required"),
    reason: z.string(),
    pattern: z.string().nullable(),
    key: ApprovalKey,
  }),
]);
export type Decision = z.infer<typeof Decision>;
export type DecisionKind = Decision["kind"];

// ---------------------------------------------------------------------------------------------
// Events (one JSON line each in the trace; shapes match spec "Policy denial" example)

const EventBase = {
  /** RFC 3339 UTC with milliseconds */
  ts: z.iso.datetime({ offset: true }),
  command: z.string(),
  policy_id: z.string(),
  session_id: z.string().optional(),
  /** ours */
  cwd: z.string().optional(),
  component: z.enum(["shell", "shim", "broker", "world", "api"]).optional(),
  policy_commit: z.string().optional(),
};

export const PolicyEvent = z.discriminatedUnion("event_type", [
  /** enforce mode: the command did not run (spec example, byte for byte) */
  z.strictObject({
    ...EventBase,
    event_type: z.literal("policy_denied"),
    reason: z.string(),
    pattern: z.string().nullable(),
  }),
  /** observe mode: the policy would have denied (or asked); the command ran (spec `trace::policy_violation`) */
  z.strictObject({
    ...EventBase,
    event_type: z.literal("policy_violation"),
    reason: z.string(),
    pattern: z.string().nullable(),
    /** what enforce mode would have done */
    would: z.enum(["deny", "approval_required"]),
  }),
  /** an approval was decided: by the user, the cache, auto_approve, or refused for lack of a TTY */
  z.strictObject({
    ...EventBase,
    event_type: z.literal("approval"),
    reason: ApprovalChoice,
    source: z.enum(["prompt", "cache", "auto_approve", "non_interactive"]),
  }),
]);
export type PolicyEvent = z.infer<typeof PolicyEvent>;

// ---------------------------------------------------------------------------------------------
// Approval cache file: ~/.substrate/approvals.json (0600)

export const ApprovalEntry = z.strictObject({
  ...ApprovalKey.shape,
  /** hash of the compiled policy: an entry stops counting when the policy changes */
  policy_hash: z.string(),
  scope: z.enum(["session", "always"]),
  /** scope "session": the SUBSTRATE_SESSION_ID it belongs to */
  session_id: z.string().optional(),
  created_at: z.iso.datetime({ offset: true }),
});
export type ApprovalEntry = z.infer<typeof ApprovalEntry>;

export const ApprovalsFile = z.strictObject({
  version: z.literal(1),
  entries: z.array(ApprovalEntry).default([]),
  /** per session: the policy (id + hash) last used; a switch clears that session's approvals */
  sessions: z.record(z.string(), z.strictObject({ policy_id: z.string(), policy_hash: z.string() })).default({}),
});
export type ApprovalsFile = z.infer<typeof ApprovalsFile>;

/**
 * Issue 14 item 4: the policy a project uses, recorded HOST-side
 * (`~/.substrate/projects/<sha256(project)[:32]>.json`, 0600) on its first use or by
 * `substrate policy use`. Nothing a world writes (the project's `.substrate-profile`) can change
 * it: the world cannot write `~/.substrate`.
 */
export const ProjectPolicySelection = z.strictObject({
  /** the project directory (real path) this selection holds for, and below */
  project: z.string().startsWith("/"),
  policy: PolicyId,
  /** RFC 3339 */
  recorded_at: z.string(),
  /** how it was chosen: first use, `substrate policy use`, or a project file naming a stricter policy */
  via: z.enum(["first_use", "policy_use", "tightened"]),
  /** the `.substrate-profile` that named the policy at first use (none: the default policy) */
  profile_file: z.string().optional(),
});
export type ProjectPolicySelection = z.infer<typeof ProjectPolicySelection>;
