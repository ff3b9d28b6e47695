/**
 * Loading policies: profile resolution (`.substrate-profile`), file lookup
 * (`~/.substrate/policies/<id>.yaml|.yml|.toml`), YAML/TOML parsing, schema validation with
 * every error reported (file + field path + what was expected), compile + self-tests.
 *
 * Nothing here mutates shared state: a load either returns a complete CompiledPolicy or throws
 * a PolicyError, so an invalid policy can never be half-applied.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, realpathSync, renameSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { basename, dirname, extname, join, resolve } from "node:path";
import { z } from "zod";
import { Policy, PolicyId, ProjectPolicySelection } from "../contract/policy.ts";
import { isDirty, lastCommitOf } from "../sys/git.ts";
import { compilePolicy, type CompiledPolicy, type PolicyIssue } from "./compile.ts";
import { DEFAULT_POLICY_YAML } from "./default-policy.ts";
import { evaluate } from "./evaluate.ts";
import { looserField } from "./tighten.ts";

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
  /** record the selection host-side when the project has none yet (first use); default true */
  record?: boolean;
}

/** How the policy in force was chosen (issue 14 item 4; `policy show` prints it). */
export interface PolicySelection {
  policy: string;
  /**
   * `recorded`: the host-side record of the project (`record_file`) selects it; `first_use`:
   * this call just recorded it; `tightened`: a `.substrate-profile` named a policy at least as
   * strict as the recorded one, which is now recorded for the profile's directory;
   * `unrecorded`: no record exists and none was written.
   */
  via: "recorded" | "first_use" | "tightened" | "unrecorded";
  /** the record (`~/.substrate/projects/<hash>.json`) */
  record_file?: string;
  /** the project directory the record holds for */
  project?: string;
  recorded_at?: string;
  /** how the record was made: `first_use` (from the profile then) or `policy_use` */
  recorded_via?: ProjectPolicySelection["via"];
  /** a `.substrate-profile` that names a policy less strict than the record (or one that cannot be loaded): not obeyed */
  ignored_profile?: { file: string; id: string; why: string };
  /** one line for stderr (an ignored profile, a record that could not be written) */
  notice?: string;
}

export interface PolicySource {
  /** the policy file, or `builtin:default` */
  file: string;
  /** the `.substrate-profile` that selected it (at first use, or now when unrecorded) */
  profile_file?: string;
  selection: PolicySelection;
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

// ---------------------------------------------------------------------------------------------
// Host-side selection (issue 14 item 4): the policy of a project is recorded under
// ~/.substrate/projects/ on its first use (or by `substrate policy use`), keyed by the project's
// real path, and looked up for the cwd and every parent. A `.substrate-profile` lives in the
// writable project, so once a record exists nothing the project holds can change which policy
// applies: `rm .substrate-profile`, a weaker `sub/.substrate-profile`, a new `sub/.git`, a
// symlink into the project from /tmp — the nearest recorded ancestor still decides.

export const projectsDir = (opts: LoadOptions = {}): string => join(substrateDir(opts), "projects");

/** `~/.substrate/projects/<sha256(dir)[:32]>.json` */
export function selectionFileFor(dir: string, opts: LoadOptions = {}): string {
  return join(projectsDir(opts), `${createHash("sha256").update(dir).digest("hex").slice(0, 32)}.json`);
}

const realDir = (p: string): string => {
  try {
    return realpathSync(p);
  } catch {
    return resolve(p);
  }
};

function readSelection(file: string, dir: string): ProjectPolicySelection | null {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new PolicyError(file, [{ path: "", message: `cannot read the recorded policy selection: ${(e as Error).message}` }], "run `substrate policy use <id>` in the project to record it again");
  }
  let rec: ProjectPolicySelection;
  try {
    rec = ProjectPolicySelection.parse(JSON.parse(text));
  } catch {
    throw new PolicyError(file, [{ path: "", message: "the recorded policy selection is not valid" }], "run `substrate policy use <id>` in the project to record it again");
  }
  return rec.project === dir ? rec : null; // another directory with the same hash prefix: not ours
}

/**
 * The record that holds for `cwd`: its own or its nearest recorded ancestor's, along the real
 * path first, then along the path as given (a symlink the world made inside the project,
 * pointing elsewhere, still finds the project's record).
 */
export function recordedSelection(cwd: string, opts: LoadOptions = {}): { rec: ProjectPolicySelection; file: string } | null {
  if (!existsSync(projectsDir(opts))) return null;
  const chains = [realDir(cwd), resolve(cwd)];
  if (chains[0] === chains[1]) chains.pop();
  const shared = sharedRoots(opts);
  for (const start of chains) {
    for (let d = start; ; d = dirname(d)) {
      // a record for /, /tmp, /var/tmp or the home directory itself holds there only: those hold unrelated projects
      if (d === start || !shared.has(d)) {
        const file = selectionFileFor(d, opts);
        const rec = readSelection(file, d);
        if (rec) return { rec, file };
      }
      if (dirname(d) === d) break;
    }
  }
  return null;
}

/** Directories whose record does not extend to what lies below them. */
function sharedRoots(opts: LoadOptions): Set<string> {
  const home = homeOf(opts);
  return new Set(["/", "/tmp", "/var/tmp", "/dev/shm", "/home", "/Users", home, realDir(home)]);
}

/** Write the record for `project` (atomically; `exclusive`: only if none exists). Returns false when one already existed. */
export function writeSelection(rec: ProjectPolicySelection, opts: LoadOptions = {}, exclusive = false): boolean {
  const dir = projectsDir(opts);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = selectionFileFor(rec.project, opts);
  const text = `${JSON.stringify(ProjectPolicySelection.parse(rec), null, 2)}\n`;
  if (exclusive) {
    try {
      writeFileSync(file, text, { flag: "wx", mode: 0o600 });
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
      throw e;
    }
  }
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, file);
  return true;
}

/**
 * `substrate policy use ID` (a host command): record that the project of `cwd` uses policy
 * `id` from now on, replacing any record there. The policy must exist and be valid.
 */
export function recordProjectPolicy(cwd: string, id: string, opts: LoadOptions = {}): { project: string; file: string; previous: string | null } {
  const project = realDir(projectDirFor(cwd));
  const policyFile = policyFileFor(id, opts);
  if (policyFile === null && id !== "default")
    throw new PolicyError(join(policiesDir(opts), `${id}.yaml`), [{ path: "", message: `policy "${id}" does not exist` }], `create it with \`substrate policy init ${id}\``);
  if (policyFile !== null) loadPolicyFile(policyFile, { home: homeOf(opts), project }); // valid, or a PolicyError
  const file = selectionFileFor(project, opts);
  const previous = readSelection(file, project)?.policy ?? recordedSelection(cwd, opts)?.rec.policy ?? null;
  writeSelection({ project, policy: id, recorded_at: new Date().toISOString(), via: "policy_use" }, opts);
  return { project, file, previous };
}

/** Which policy applies to `cwd`, and why (records it on first use unless `record: false`). */
type Resolved = PolicySelection & {
  profile?: { id: string; file: string };
  /** a profile naming another policy than the record: obeyed only if that policy is at least as strict */
  candidate?: { id: string; file: string };
};

export function resolveSelection(cwd: string, opts: LoadOptions = {}): Resolved {
  let found = recordedSelection(cwd, opts);
  let profile: { id: string; file: string } | null = null;
  let profileError: PolicyError | null = null;
  try {
    profile = findProfile(cwd);
  } catch (e) {
    if (!(e instanceof PolicyError)) throw e;
    profileError = e;
  }
  const project = realDir(projectDirFor(cwd));
  let rec0: ProjectPolicySelection | null = null;
  if (!found && !profileError && opts.record !== false) {
    rec0 = { project, policy: profile?.id ?? "default", recorded_at: new Date().toISOString(), via: "first_use", ...(profile ? { profile_file: profile.file } : {}) };
    try {
      if (!writeSelection(rec0, opts, true)) {
        // another process recorded it first: use what it recorded
        const file = selectionFileFor(project, opts);
        const rec = readSelection(file, project);
        if (rec) found = { rec, file };
        rec0 = null;
      }
    } catch (e) {
      if (e instanceof PolicyError) throw e;
      const id = profile?.id ?? "default";
      return { policy: id, ...(profile ? { profile } : {}), via: "unrecorded", notice: `substrate: cannot record the policy selection of ${project} in ${projectsDir(opts)} (${(e as Error).message.split("\n")[0]}): a project file may still change it` };
    }
  }
  if (found) {
    const { rec, file } = found;
    const sel: Resolved = {
      policy: rec.policy,
      via: "recorded",
      record_file: file,
      project: rec.project,
      recorded_at: rec.recorded_at,
      recorded_via: rec.via,
      ...(rec.profile_file !== undefined ? { profile: { id: rec.policy, file: rec.profile_file } } : {}),
    };
    // a broken profile is not obeyed (the world could have written it); a different one only if stricter
    if (profileError) sel.notice = `substrate: ${profileError.file} is not valid and is ignored: this project's policy is "${rec.policy}" (recorded in ${file})`;
    else if (profile && profile.id !== rec.policy) sel.candidate = profile;
    return sel;
  }
  if (profileError) throw profileError;
  const id = profile?.id ?? "default";
  const base = { policy: id, ...(profile ? { profile } : {}) };
  if (rec0 === null) return { ...base, via: "unrecorded" };
  return { ...base, via: "first_use", record_file: selectionFileFor(project, opts), project, recorded_at: rec0.recorded_at, recorded_via: "first_use" };
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

/**
 * (HOTPATH, issue 17) Compiled policies by content: a long-lived process (the agent's policy
 * helper, which loads the policy afresh for every fast-path command as the CLI would; the proxy)
 * pays YAML + validation + compile once per distinct text, not per command. Keyed by the exact
 * inputs (file, text, home, project, checkName), so a hit is what compiling would return.
 */
const compiled = new Map<string, CompiledPolicy>();

/** `checkName`: the id must equal the file name (policies in ~/.substrate/policies; not drafts elsewhere). */
export function compileText(text: string, file: string, ctx: { home: string; project: string }, checkName = true): CompiledPolicy {
  const key = JSON.stringify([file, ctx.home, ctx.project, checkName, text]);
  const hit = compiled.get(key);
  if (hit) return hit;
  const policy = compileTextUncached(text, file, ctx, checkName);
  if (compiled.size >= 32) compiled.delete(compiled.keys().next().value!);
  compiled.set(key, policy);
  return policy;
}

function compileTextUncached(text: string, file: string, ctx: { home: string; project: string }, checkName: boolean): CompiledPolicy {
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
  const { profile, candidate, ...selection } = resolveSelection(cwd, opts);
  const project = projectDirFor(cwd);
  const byId = (id: string, by: string, hint: string): { policy: CompiledPolicy; file: string; commit: string } => {
    const file = policyFileFor(id, opts);
    if (file === null) {
      if (id !== "default") throw new PolicyError(join(policiesDir(opts), `${id}.yaml`), [{ path: "", message: `policy "${id}" selected by ${by} does not exist` }], hint);
      return { policy: compileText(DEFAULT_POLICY_YAML, BUILTIN_DEFAULT, { home, project }), file: BUILTIN_DEFAULT, commit: `sha256:${sha16(DEFAULT_POLICY_YAML)}` };
    }
    const { policy, text } = loadPolicyFile(file, { home, project });
    return { policy, file, commit: policyCommitOf(file, text) };
  };
  const recorded = byId(
    selection.policy,
    selection.record_file ? `the record ${selection.record_file}` : (profile?.file ?? "default"),
    selection.record_file
      ? `create it with \`substrate policy init ${selection.policy}\`, or choose another with \`substrate policy use <id>\``
      : `create it with \`substrate policy init ${selection.policy}\`, or change ${profile?.file}`,
  );
  if (candidate) {
    // a project file may only tighten: obey it when its policy is at least as strict as the recorded one
    let why: string;
    try {
      const c = byId(candidate.id, candidate.file, "");
      const looser = looserField(c.policy.doc, recorded.policy.doc);
      if (looser === null) {
        const profDir = realDir(dirname(candidate.file));
        const dir = selection.project && !profDir.startsWith(`${selection.project}/`) ? selection.project : profDir;
        const sel: PolicySelection = { ...selection, policy: candidate.id, via: "tightened", project: dir, record_file: selectionFileFor(dir, opts), recorded_via: "tightened", recorded_at: new Date().toISOString() };
        try {
          if (opts.record !== false) writeSelection({ project: dir, policy: candidate.id, recorded_at: sel.recorded_at!, via: "tightened", profile_file: candidate.file }, opts);
          else sel.via = "unrecorded";
        } catch (e) {
          sel.notice = `substrate: cannot record the stricter policy "${candidate.id}" for ${dir} (${(e as Error).message.split("\n")[0]})`;
        }
        return { policy: c.policy, source: { file: c.file, profile_file: candidate.file, selection: sel }, commit: c.commit };
      }
      why = `it is less strict in ${looser}`;
    } catch (e) {
      if (!(e instanceof PolicyError)) throw e;
      why = `it cannot be used: ${e.issues[0]?.message ?? e.message}`;
    }
    selection.ignored_profile = { ...candidate, why };
    selection.notice =
      `substrate: ${candidate.file} names policy "${candidate.id}", which is not at least as strict as this project's policy "${selection.policy}" (${why}): ignored; ` +
      `to switch, run \`substrate policy use ${candidate.id}\` outside any world`;
  }
  return { policy: recorded.policy, source: { file: recorded.file, ...(profile ? { profile_file: profile.file } : {}), selection }, commit: recorded.commit };
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
