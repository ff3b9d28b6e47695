/**
 * Policy document → CompiledPolicy: variables expanded, every pattern compiled and indexed
 * once per load (evaluate() then never parses a pattern), self-test examples run.
 *
 * A CompiledPolicy is immutable (frozen): hot reload swaps the whole object, so an evaluation
 * that took a reference keeps a consistent policy even while a reload happens.
 */
import { createHash } from "node:crypto";
import type { Decision, Policy } from "../contract/policy.ts";
import { compilePattern, RuleSet, type CompiledPattern } from "./pattern.ts";

export interface PolicyIssue {
  /** field path, e.g. `commands.denied[2]` ("" for the whole document) */
  path: string;
  message: string;
}

export interface CompiledPolicy {
  readonly id: string;
  readonly mode: Policy["mode"];
  /** the validated document with $HOME/$PROJECT expanded in paths */
  readonly doc: Policy;
  /** sha256 (16 hex) of the expanded document: approvals are bound to it */
  readonly hash: string;
  readonly home: string;
  readonly project: string;
  /**
   * The fs section as written (`$HOME`, `$PROJECT`, `~` unexpanded): the world's fs view is
   * expanded by the agent with the CALLER's home and the WORLD's project — the project this
   * policy was compiled for may not be the world's (`world verify`'s throwaway project).
   */
  readonly rawFs: Policy["fs"];
  readonly rules: {
    readonly denied: RuleSet;
    readonly allowed: RuleSet;
    readonly isolated: RuleSet;
    readonly requireApproval: RuleSet;
    readonly autoApprove: RuleSet;
  };
}

export interface CompileContext {
  home: string;
  /** the project directory `$PROJECT` stands for */
  project: string;
}

/** `$HOME`, `${HOME}`, `$PROJECT`, `${PROJECT}` anywhere, and a leading `~` (alone or `~/…`). */
export function expandVars(s: string, ctx: CompileContext): string {
  const v: Record<string, string> = { HOME: ctx.home, PROJECT: ctx.project };
  let r = s.replace(/\$\{(HOME|PROJECT)\}|\$(HOME|PROJECT)(?![A-Za-z0-9_])/g, (_m, a, b) => v[a ?? b]);
  if (r === "~" || r.startsWith("~/")) r = ctx.home + r.slice(1);
  return r;
}

export function compilePolicy(
  doc: Policy,
  ctx: CompileContext,
  evaluate: (cmd: string, cwd: string, p: CompiledPolicy) => Decision,
): { policy: CompiledPolicy; issues?: undefined } | { issues: PolicyIssue[]; policy?: undefined } {
  const issues: PolicyIssue[] = [];
  const vars = { HOME: ctx.home, PROJECT: ctx.project };
  const rules = (section: string, list: readonly string[]): RuleSet => {
    const compiled: CompiledPattern[] = [];
    list.forEach((src, i) => {
      const r = compilePattern(src, vars);
      if (r.errors) for (const e of r.errors) issues.push({ path: `${section}[${i}]`, message: `${e} (pattern: ${src})` });
      else compiled.push(r.pattern);
    });
    return new RuleSet(compiled);
  };
  const x = (l: string[]): string[] => l.map((s) => expandVars(s, ctx));
  const expanded: Policy = {
    ...doc,
    fs: { ...doc.fs, read: x(doc.fs.read), write: x(doc.fs.write) }, // issue 13: deny_read/read_only stay as written (the agent expands them with the caller's home)
    ...(doc.privacy ? { privacy: { ...doc.privacy, ignore_paths: x(doc.privacy.ignore_paths) } } : {}),
  };
  const policy: CompiledPolicy = Object.freeze({
    id: doc.id,
    mode: doc.mode,
    rawFs: deepFreeze(structuredClone(doc.fs)),
    doc: deepFreeze(expanded),
    hash: createHash("sha256").update(JSON.stringify(expanded)).digest("hex").slice(0, 16),
    home: ctx.home,
    project: ctx.project,
    rules: Object.freeze({
      denied: rules("commands.denied", doc.commands.denied),
      allowed: rules("commands.allowed", doc.commands.allowed),
      isolated: rules("commands.isolated", doc.commands.isolated),
      requireApproval: rules("commands.require_approval", doc.commands.require_approval),
      autoApprove: rules("approval.auto_approve", doc.approval.auto_approve),
    }),
  });
  if (issues.length > 0) return { issues };
  issues.push(...selfTest(policy, evaluate));
  if (issues.length > 0) return { issues };
  return { policy };
}

const EXPECT = { deny: "deny", allow: "allow", isolate: "allow_with_restrictions", approve: "approval_required" } as const;

/** Run `examples:`; each failure is an issue at `examples.<kind>[i]`. */
function selfTest(p: CompiledPolicy, evaluate: (cmd: string, cwd: string, p: CompiledPolicy) => Decision): PolicyIssue[] {
  const ex = p.doc.examples;
  if (!ex) return [];
  const issues: PolicyIssue[] = [];
  for (const kind of ["deny", "allow", "isolate", "approve"] as const) {
    ex[kind].forEach((cmd, i) => {
      const d = evaluate(cmd, p.project, p);
      if (d.kind !== EXPECT[kind]) {
        const why = d.kind === "deny" || d.kind === "allow_with_restrictions" || d.kind === "approval_required" ? ` (pattern: ${d.pattern ?? "none"})` : "";
        issues.push({ path: `examples.${kind}[${i}]`, message: `self-test failed: \`${cmd}\` should be ${kind === "approve" ? "approval_required" : EXPECT[kind]} but is ${d.kind}${why}` });
      }
    });
  }
  return issues;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object" && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}
