/** World description shared by the broker, the backends and the agent (spec: WorldSpec, FsDiff). */
import { z } from "zod";
import { EgressSpec, netEntryProblem } from "./net.ts";

/** Spec: `cpu: "2"` (CPUs, string per schema), `memory: "2Gi"`; `pids` is ours (fork-bomb guard). */
export const ResourceLimits = z.strictObject({
  cpu: z.string().regex(/^\d+(\.\d+)?$/, 'expected a CPU count such as "2" or "0.5"').optional(),
  memory: z
    .string()
    .regex(/^\d+(\.\d+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$/, 'expected a size such as "512Mi" or "2Gi"')
    .optional(),
  pids: z.number().int().positive().optional(),
});
export type ResourceLimits = z.infer<typeof ResourceLimits>;

export const FsMode = z.enum(["writable", "read_only"]);
export const FsIsolation = z.enum(["workspace", "full"]);

/**
 * Issue 13 (FSVIEW): secrets hidden from every world unless a policy's `fs.deny_read` says
 * otherwise (the policy schema's default, so `policy show` lists them). `~` is the caller's home.
 */
export const DEFAULT_DENY_READ: readonly string[] = [
  "~/.ssh",
  "~/.gnupg",
  "~/.aws",
  "~/.azure",
  "~/.config/gcloud",
  "~/.kube",
  "~/.docker/config.json",
  "~/.netrc",
  "~/.git-credentials",
  "~/.config/gh",
  "~/.password-store",
  "~/.local/share/keyrings",
  "~/.mozilla",
  "~/.config/google-chrome",
  "~/.config/chromium",
  "~/.config/BraveSoftware",
  "~/.config/microsoft-edge",
];

/**
 * Issue 13 (FSVIEW): the filesystem view the policy's `fs` section asks for. Patterns as the
 * policy writes them: `$HOME`, `${HOME}` and a leading `~` are expanded BY THE AGENT with the
 * caller's home (the world belongs to a Caller), `$PROJECT` with project_dir. Glob → mount
 * semantics: docs/POLICY.md "Filesystem view"; what a command sees: docs/WORLD.md.
 */
export const FsView = z.strictObject({
  /** visible read-only beyond the system dirs and the caller's home; "/**" = the whole host tree */
  read: z.array(z.string()).default([]),
  /** writable binds of host paths (created for the caller when missing, owned by the caller) */
  write: z.array(z.string()).default([]),
  /** hidden: an empty dir / empty file in their place */
  deny_read: z.array(z.string()).default([...DEFAULT_DENY_READ]),
  /** read-only even inside a writable area; added to the built-in list (never replaces it) */
  read_only: z.array(z.string()).default([]),
});
export type FsView = z.infer<typeof FsView>;

export const WorldSpec = z.strictObject({
  reuse_session: z.boolean().default(true),
  isolate_network: z.boolean().default(true),
  limits: ResourceLimits.default({}),
  enable_preload: z.boolean().default(false),
  /** net.allowed (issue 15: agent/egress/rules.ts; every entry checked here, so a typo is a 400 naming it) */
  allowed_domains: z.array(z.string().superRefine((e, ctx) => {
    const p = netEntryProblem(e);
    if (p) ctx.addIssue({ code: "custom", message: p });
  })).default([]),
  project_dir: z.string().startsWith("/", "project_dir must be an absolute path"),
  fs_mode: FsMode.default("writable"),
  fs_isolation: FsIsolation.default("workspace"),
  /** Issue 14.1: ptrace/process_vm_* allowed in this world (policy `world.allow_ptrace`). */
  allow_ptrace: z.boolean().default(false),
  /** Issue 13: rootless agents only — commands are uid 0 of the world's user namespace (policy `world.root_inside`). */
  root_inside: z.boolean().default(false),
  /** Issue 13: the policy's fs view; absent = FsView defaults (secrets hidden, nothing extra writable). */
  fs_view: FsView.optional(),
  /** Issue 15 (EGRESS): the policy's id and net.egress_budget for the world's gateway (live, per execute). */
  egress: EgressSpec.optional(),
});
export type WorldSpec = z.infer<typeof WorldSpec>;
/** What a caller may send: everything but project_dir optional. */
export const WorldSpecInput = WorldSpec.partial();
export type WorldSpecInput = z.infer<typeof WorldSpecInput>;

/** Spec FsDiff {writes, mods, deletes}, plus the spec's smart-truncation fields. */
export const FsDiff = z.strictObject({
  writes: z.array(z.string()),
  mods: z.array(z.string()),
  deletes: z.array(z.string()),
  truncated: z.boolean().optional(),
  tree_hash: z.string().regex(/^sha256:[0-9a-f]{64}$/).optional(),
  summary: z.string().optional(),
});
export type FsDiff = z.infer<typeof FsDiff>;

export const WorldBackendName = z.enum(["linux-local", "mac-lima"]);
export type WorldBackendName = z.infer<typeof WorldBackendName>;

/**
 * Issue 13: who a world belongs to. A root agent takes the uid/gid from SO_PEERCRED of the
 * connection (never from the request body) and the rest from the caller's passwd/group
 * entries; the world's commands run with exactly this identity.
 */
export const Caller = z.strictObject({
  uid: z.number().int().nonnegative(),
  gid: z.number().int().nonnegative(),
  /** Supplementary groups (getgrouplist of name + gid). */
  groups: z.array(z.number().int().nonnegative()),
  name: z.string(),
  /** The caller's real home path (passwd pw_dir); HOME in the world. */
  home: z.string().startsWith("/"),
  shell: z.string(),
});
export type Caller = z.infer<typeof Caller>;
