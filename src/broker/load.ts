/**
 * Loading policies: profile resolution (`.substrate-profile`), file lookup
 * (`~/.substrate/policies/<id>.yaml|.yml|.toml`), YAML/TOML parsing, schema validation with
 * every error reported (file + field path + what was expected), compile + self-tests.
 *
 * Nothing here mutates shared state: a load either returns a complete CompiledPolicy or throws
 * a PolicyError, so an invalid policy can never be half-applied.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { basename, dirname, extname, join, resolve } from "node:path";
import { z } from "zod";
import { Policy, PolicyId } from "../contract/policy.ts";
import { isDirty, lastCommitOf } from "../sys/git.ts";
import { compilePolicy, type CompiledPolicy, type PolicyIssue } from "./compile.ts";
import { DEFAULT_POLICY_YAML } from "./default-policy.ts";
import { evaluate } from "./evaluate.ts";

export const PROFILE_FILE = ".substrate-profile";
export const BUILTIN_DEFAULT = "builtin:default";
export const POLICY_EXTENSIONS = [".yaml", ".yml", ".toml"] as const;

/** A policy that cannot be used. `substrate` prints `format()` and exits 2. */
export class PolicyError extends Error {
  override name = "PolicyError";
  readonly exitCode = 2;
  constructor(
    readonly file: string,
    readonly issues: PolicyIssue[],
    readonly hint?: string,
  ) {
    super(`invalid policy ${file}: ${issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join("; ")}`);
  }
  format(): string {
    const lines = [`substrate: invalid policy ${this.file}:`];
    for (const i of this.issues) lines.push(`  - ${i.path ? `${i.path}: ` : ""}${i.message}`);
    if (this.hint) lines.push(`  hint: ${this.hint}`);
    return lines.join("\n");
  }
}

export interface LoadOptions {
  /** the user's home directory (tests pass a temp dir); default $HOME */
  home?: string;
}

export interface PolicySource {
  /** the policy file, or `builtin:default` */
  file: string;
  /** the `.substrate-profile` that selected it */
  profile_file?: string;
}

export interface LoadedPolicy {
  policy: CompiledPolicy;
  source: PolicySource;
  /** git short hash of the policy file's last commit (`-dirty.<sha8>` when edited), else `sha256:<hex16>` */
  commit: string;
}

export function homeOf(opts: LoadOptions = {}): string {
  return opts.home ?? process.env.HOME ?? homedir();
}

/** `~/.substrate` (or $SUBSTRATE_HOME when no explicit home was given). */
export function substrateDir(opts: LoadOptions = {}): string {
  if (opts.home === undefined && process.env.SUBSTRATE_HOME) return process.env.SUBSTRATE_HOME;
  return join(homeOf(opts), ".substrate");
}

export const policiesDir = (opts: LoadOptions = {}): string => join(substrateDir(opts), "policies");

/** The nearest `.substrate-profile` in `cwd` or a parent: the policy id it names. */
export function findProfile(cwd: string): { id: string; file: string } | null {
  let dir = resolve(cwd);
  for (;;) {
    const f = join(dir, PROFILE_FILE);
    if (existsSync(f)) {
      let text: string;
      try {
        text = readFileSync(f, "utf8");
      } catch (e) {
        throw new PolicyError(f, [{ path: "", message: `cannot read: ${(e as Error).message}` }]);
      }
      const line = text
        .split("\n")
        .map((l) => l.trim())
        .find((l) => l !== "" && !l.startsWith("#"));
      if (line === undefined) throw new PolicyError(f, [{ path: "", message: "empty profile file: expected a policy id such as `default`" }]);
      if (!PolicyId.safeParse(line).success)
        throw new PolicyError(f, [{ path: "", message: `"${line}" is not a policy id: expected lowercase letters, digits and '-'` }]);
      return { id: line, file: f };
    }
    const up = dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

/**
 * `$PROJECT`: the nearest ancestor of cwd holding `.git` or `.substrate-profile`, else cwd —
 * the same rule as the world's project directory (src/cli/_project.ts), so `$PROJECT/**` in a
 * policy names exactly the directory the world mounts as the project.
 */
export function projectDirFor(cwd: string): string {
  const start = resolve(cwd);
  for (let d = start; ; d = dirname(d)) {
    if (existsSync(join(d, ".git")) || existsSync(join(d, PROFILE_FILE))) return d;
    if (dirname(d) === d) return start;
  }
}

/** The file holding policy `id`, or null. */
export function policyFileFor(id: string, opts: LoadOptions = {}): string | null {
  const dir = policiesDir(opts);
  for (const ext of POLICY_EXTENSIONS) {
    const f = join(dir, `${id}${ext}`);
    if (existsSync(f)) return f;
  }
  return null;
}

/** Parse YAML or TOML text (by extension); syntax errors carry line/column. */
export function parsePolicyText(text: string, file: string): unknown {
  const isToml = extname(file) === ".toml";
  try {
    // @iarna/toml is loaded only for .toml policies: it costs tens of ms of cold start
    return isToml ? (require("@iarna/toml") as typeof import("@iarna/toml")).parse(text) : Bun.YAML.parse(text);
  } catch (e) {
    const err = e as Error & { line?: number; column?: number; col?: number };
    const where = err.line !== undefined ? ` at line ${err.line}${err.column ?? err.col ? `, column ${err.column ?? err.col}` : ""}` : "";
    const msg = err.message.split("\n")[0].replace(/^YAML Parse error: /, "");
    throw new PolicyError(file, [{ path: "", message: `${isToml ? "TOML" : "YAML"} syntax error${where}: ${msg}` }]);
  }
}

/** Schema validation; every zod issue becomes `path: what was expected`. */
export function validatePolicy(raw: unknown, file: string): Policy {
  if (raw === null || raw === undefined) throw new PolicyError(file, [{ path: "", message: "the file is empty: expected a mapping with at least `id` and `name`" }]);
  // jitless: a policy is parsed once per process; zod's compiled fast path costs ~10 ms to build
  const r = Policy.safeParse(dropNulls(raw), { jitless: true });
  if (r.success) return r.data;
  throw new PolicyError(file, r.error.issues.map(issueOf), "see docs/POLICY.md (schema: docs/policy.json); `substrate policy init` writes a valid example");
}

/** YAML `key:` with nothing after it is null: read it as "not set" (the schema default applies). */
function dropNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(dropNulls);
  if (v === null || typeof v !== "object") return v;
  const o: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) if (x !== null) o[k] = dropNulls(x);
  return o;
}

function issueOf(i: z.core.$ZodIssue): PolicyIssue {
  const path = fieldPath(i.path);
  if (i.code === "unrecognized_keys") {
    const known = knownKeys(i.path);
    return {
      path,
      message: `unknown field${i.keys.length > 1 ? "s" : ""} ${i.keys.map((k) => `"${k}"`).join(", ")}${known ? `: expected one of ${known.join(", ")}` : ""}`,
    };
  }
  if (i.code === "invalid_type" && i.path.length > 0 && /received undefined/.test(i.message)) return { path, message: `required field missing (expected ${i.expected})` };
  return { path, message: i.message.replace(/^Invalid input: /, "") };
}

export function fieldPath(p: readonly PropertyKey[]): string {
  let s = "";
  for (const k of p) s += typeof k === "number" ? `[${k}]` : s === "" ? String(k) : `.${String(k)}`;
  return s;
}

/** Keys allowed at `path` in the Policy schema (for "unknown field" messages). */
function knownKeys(path: readonly PropertyKey[]): string[] | null {
  let s: unknown = Policy;
  for (const k of [...path, null]) {
    // unwrap default/optional wrappers until an object schema
    for (let n = 0; n < 5 && s && !(s instanceof z.ZodObject); n++) s = (s as { unwrap?: () => unknown }).unwrap?.() ?? (s as { def?: { innerType?: unknown } }).def?.innerType;
    if (!(s instanceof z.ZodObject)) return null;
    if (k === null) return Object.keys(s.shape);
    s = (s.shape as Record<string, unknown>)[String(k)];
  }
  return null;
}

/** Read, parse, validate, check the id against the file name, compile, self-test. */
export function loadPolicyFile(file: string, ctx: { home: string; project: string }): { policy: CompiledPolicy; text: string } {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new PolicyError(file, [{ path: "", message: `cannot read: ${(e as Error).message}` }]);
  }
  return { policy: compileText(text, file, ctx), text };
}

/** `checkName`: the id must equal the file name (policies in ~/.substrate/policies; not drafts elsewhere). */
export function compileText(text: string, file: string, ctx: { home: string; project: string }, checkName = true): CompiledPolicy {
  const doc = validatePolicy(parsePolicyText(text, file), file);
  if (checkName && file !== BUILTIN_DEFAULT) {
    const stem = basename(file, extname(file));
    if (PolicyId.safeParse(stem).success && stem !== doc.id)
      throw new PolicyError(file, [{ path: "id", message: `"${doc.id}" does not match the file name: expected "${stem}"` }], `rename the file to ${doc.id}${extname(file)} or set id: ${stem}`);
  }
  const r = compilePolicy(doc, ctx, evaluate);
  if (r.issues) throw new PolicyError(file, r.issues);
  return r.policy;
}

const sha16 = (b: string | Buffer): string => createHash("sha256").update(b).digest("hex").slice(0, 16);

/**
 * `policy_commit` (same format as src/trace/context.ts `policyCommit`): git short hash of the
 * last commit touching the file when its directory is in a git work tree (`-dirty.<sha8>` when
 * it differs from HEAD), else `sha256:<hex16>` of the content. git is only asked when a `.git`
 * exists above the file: the common case (no repo) costs no process spawn.
 */
export function policyCommitOf(file: string, text: string): string {
  const h = sha16(text);
  if (file === BUILTIN_DEFAULT || !hasGitAbove(dirname(file))) return `sha256:${h}`;
  try {
    const c = lastCommitOf(dirname(file), basename(file));
    if (c !== null) return isDirty(dirname(file), basename(file)) ? `${c}-dirty.${h.slice(0, 8)}` : c;
  } catch {
    // git missing or unhappy: the content hash is still exact
  }
  return `sha256:${h}`;
}

function hasGitAbove(dir: string): boolean {
  let d = resolve(dir);
  for (;;) {
    if (existsSync(join(d, ".git"))) return true;
    const up = dirname(d);
    if (up === d) return false;
    d = up;
  }
}

/** The policy in force for `cwd` (sync core of loadEffectivePolicy). */
export function loadEffectivePolicySync(cwd: string, opts: LoadOptions = {}): LoadedPolicy {
  const home = homeOf(opts);
  const profile = findProfile(cwd);
  const id = profile?.id ?? "default";
  const project = projectDirFor(cwd);
  const file = policyFileFor(id, opts);
  if (file === null) {
    if (id !== "default")
      throw new PolicyError(join(policiesDir(opts), `${id}.yaml`), [{ path: "", message: `policy "${id}" selected by ${profile!.file} does not exist` }], `create it with \`substrate policy init ${id}\`, or change ${profile!.file}`);
    const policy = compileText(DEFAULT_POLICY_YAML, BUILTIN_DEFAULT, { home, project });
    return { policy, source: { file: BUILTIN_DEFAULT, ...(profile ? { profile_file: profile.file } : {}) }, commit: `sha256:${sha16(DEFAULT_POLICY_YAML)}` };
  }
  const { policy, text } = loadPolicyFile(file, { home, project });
  return { policy, source: { file, ...(profile ? { profile_file: profile.file } : {}) }, commit: policyCommitOf(file, text) };
}

/** Interface for the rest of the system: the policy in force for `cwd`, where it came from, its commit. */
export async function loadEffectivePolicy(cwd: string, opts: LoadOptions = {}): Promise<LoadedPolicy> {
  return loadEffectivePolicySync(cwd, opts);
}

/** mtime+size of a file, for cheap change detection. */
export function fileStamp(file: string): string {
  try {
    const st = statSync(file);
    return `${st.mtimeMs}:${st.size}:${st.ino}`;
  } catch {
    return "missing";
  }
}
