/**
 * The policy pattern language (docs/POLICY.md, "Pattern language", is the user-facing text):
 *
 * - A pattern is a simple command, or a pipeline of simple commands joined by `|`.
 *   It is tokenized like a shell line (quotes, escapes) by the same lexer as commands.
 * - Each pattern word is a glob over ONE word of the command: `*` any characters (also `/`),
 *   `?` one character, `[abc]`/`[a-z]`/`[!a]` one character of a set. Quoted or escaped glob
 *   characters are literal.
 * - A pattern word that is exactly an unquoted `*` matches ANY NUMBER of words (also none).
 * - Patterns are anchored: they must cover the whole simple command (`rm -rf /` does not match
 *   `rm -rf / x`; write `rm -rf / *` for that).
 * - The first word, when it has no `/`, is compared with the basename of the command
 *   (`sudo *` matches `/usr/bin/sudo ls`).
 * - `$HOME`, `${HOME}`, `~` and `$PROJECT` in patterns are expanded at load time; in commands
 *   `$HOME`, `${HOME}`, a leading `~` and `$PWD` are expanded before matching.
 *
 * Commands are analysed into "units" (simple commands) wherever they occur: after `;` `&&`
 * `||` `&` and newlines, in pipelines, subshells, `$(…)`/backticks/`<(…)`, here-document
 * bodies, behind wrappers (`sudo`, `env`, `nohup`, `exec`, `xargs`, `timeout`, ...) and inside
 * `bash -c "…"` / `sh -c` / `eval` / `su -c` / `find -exec` (parsed again, recursively).
 */
import { MAX_DEPTH, parseLine, shellQuote, type LexWord, type List } from "./_lexer.ts";

// ---------------------------------------------------------------------------------------------
// Compiled patterns

type Item = { kind: "any" } | { kind: "lit"; text: string; slash: boolean } | { kind: "re"; re: RegExp; slash: boolean };

export interface CompiledPattern {
  /** as written in the policy */
  source: string;
  /** one item list per pipeline element */
  elements: Item[][];
}

export function compilePattern(
  source: string,
  vars: Readonly<Record<string, string>>,
): { pattern: CompiledPattern; errors?: undefined } | { errors: string[]; pattern?: undefined } {
  const { list, out } = parseLine(source, { vars, strict: true });
  const errors = [...out.errors];
  if (out.substitutions.length > 0) errors.push("patterns may not contain command substitutions ($(…), `…`, <(…))");
  if (out.redirections) errors.push("patterns may not contain redirections (<, >, 2>&1 ...): quote them to match them literally");
  if (list.pipelines.length === 0) errors.push("empty pattern");
  if (list.pipelines.length > 1)
    errors.push("a pattern may join commands with `|` only (not `;`, `&&`, `||`, `&` or newlines): write one pattern per command");
  const elements: Item[][] = [];
  for (const el of list.pipelines[0]?.elements ?? []) {
    if (el.group) {
      errors.push("patterns may not contain subshells `( … )`");
      continue;
    }
    const words = el.cmd.words;
    if (words.length > 0 && ASSIGN.test(words[0].text) && words[0].q[0] === 0)
      errors.push(`a pattern cannot start with an assignment ("${words[0].text}"): assignments are ignored when matching`);
    elements.push(words.map(compileWord));
  }
  if (errors.length > 0) return { errors };
  return { pattern: { source, elements } };
}

function compileWord(w: LexWord): Item {
  const active = (k: number): boolean => w.q[k] === 0;
  if ((w.text === "*" || w.text === "**") && w.q.every((x) => x === 0)) return { kind: "any" };
  let glob = false;
  for (let k = 0; k < w.text.length; k++) if (active(k) && "*?[".includes(w.text[k])) glob = true;
  const slash = w.text.includes("/");
  if (!glob) return { kind: "lit", text: w.text, slash };
  let re = "";
  for (let k = 0; k < w.text.length; k++) {
    const c = w.text[k];
    if (!active(k)) re += escapeRe(c);
    else if (c === "*") {
      if (!re.endsWith(".*")) re += ".*";
    } else if (c === "?") re += ".";
    else if (c === "[") {
      const end = w.text.indexOf("]", k + 2);
      if (end < 0) {
        re += "\\[";
        continue;
      }
      let body = w.text.slice(k + 1, end);
      let neg = false;
      if (body[0] === "!" || body[0] === "^") {
        neg = true;
        body = body.slice(1);
      }
      re += `[${neg ? "^" : ""}${body.replace(/[\\\]^]/g, (m) => `\\${m}`)}]`;
      k = end;
    } else re += escapeRe(c);
  }
  return { kind: "re", re: new RegExp(`^${re}$`, "s"), slash };
}

const escapeRe = (c: string): string => c.replace(/[.*+?^${}()|[\]\\/-]/g, (m) => `\\${m}`);

const basename = (p: string): string => {
  const k = p.lastIndexOf("/");
  return k < 0 ? p : p.slice(k + 1);
};

function itemMatches(it: Item, word: string, first: boolean): boolean {
  const w = first && it.kind !== "any" && !it.slash ? basename(word) : word;
  if (it.kind === "lit") return it.text === w;
  if (it.kind === "re") return it.re.test(w);
  return true;
}

/** Wildcard matching over words, `any` items being the stars (classic backtracking, O(n·m) worst case). */
export function matchWords(items: Item[], words: readonly string[]): boolean {
  let p = 0;
  let w = 0;
  let starP = -1;
  let starW = 0;
  const m = items.length;
  const n = words.length;
  while (w < n) {
    if (p < m && items[p].kind === "any") {
      starP = p++;
      starW = w;
      continue;
    }
    if (p < m && itemMatches(items[p], words[w], w === 0)) {
      p++;
      w++;
      continue;
    }
    if (starP >= 0) {
      p = starP + 1;
      w = ++starW;
      continue;
    }
    return false;
  }
  while (p < m && items[p].kind === "any") p++;
  return p === m;
}

// ---------------------------------------------------------------------------------------------
// Command analysis

export interface Unit {
  /** argv after quote removal, without leading assignments and reserved words */
  words: string[];
  /** words of the commands this one runs through wrappers (`sudo X` → X), outermost first */
  forms: string[][];
  /** the subset of `forms` reached only through transparent wrappers (env, nohup, exec, ...) */
  allowForms: string[][];
  /** roots of a `bash -c "…"` / `eval` line this unit runs */
  inner: Unit[] | null;
  /** the inner line was reached through transparent wrappers only (it may justify an allow) */
  innerTransparent: boolean;
  /** shell-quoted display text */
  text: string;
}

export interface ElementView {
  /** units that read the element's stdin */
  heads: Unit[];
  /** units whose stdout is the element's stdout */
  tails: Unit[];
}

export interface Analysis {
  /** every unit anywhere in the line (including inside shells, substitutions, groups) */
  units: Unit[];
  /** units whose allowance must be checked on their own (not inside a `bash -c` of another unit) */
  roots: Unit[];
  /** every pipeline of two or more elements */
  pipes: ElementView[][];
  operators: boolean;
  redirections: boolean;
  tooDeep: boolean;
}

const ASSIGN = /^[A-Za-z_][A-Za-z0-9_]*\+?=/;
// `time` is not here: it takes options (`time -p cmd`), the wrapper table handles it
const NO_COMMAND = new Set(["case", "esac", "for", "select"]);
const RESERVED = new Set(["!", "{", "}", "if", "then", "elif", "else", "fi", "do", "done", "while", "until", "function", "coproc"]);

export function analyze(line: string, vars: Readonly<Record<string, string>>): Analysis {
  const a: Analysis = { units: [], roots: [], pipes: [], operators: false, redirections: false, tooDeep: false };
  a.roots = addLine(a, line, vars, 0);
  return a;
}

/** Parse one line into `a`; returns its root units. */
function addLine(a: Analysis, line: string, vars: Readonly<Record<string, string>>, depth: number): Unit[] {
  if (depth > MAX_DEPTH) {
    a.tooDeep = true;
    return [];
  }
  const { list, out } = parseLine(line, { vars, strict: false });
  a.operators ||= out.operators;
  a.redirections ||= out.redirections;
  a.tooDeep ||= out.tooDeep;
  const roots: Unit[] = [];
  addList(a, list, vars, depth, roots);
  for (const sub of out.substitutions) addList(a, sub, vars, depth, roots);
  return roots;
}

function addList(a: Analysis, list: List, vars: Readonly<Record<string, string>>, depth: number, roots: Unit[]): ElementView[] {
  // returns, per pipeline, a view of the pipeline as one element (heads of first, tails of last)
  const views: ElementView[] = [];
  for (const pl of list.pipelines) {
    const els: ElementView[] = [];
    for (const el of pl.elements) {
      if (el.group) {
        const inner = addList(a, el.group, vars, depth, roots);
        els.push({ heads: inner.flatMap((v) => v.heads), tails: inner.flatMap((v) => v.tails) });
        continue;
      }
      const u = makeUnit(a, el.cmd.words, vars, depth);
      if (!u) continue;
      roots.push(u);
      els.push(unitView(u));
    }
    if (els.length >= 2) a.pipes.push(els);
    if (els.length > 0) views.push({ heads: els[0].heads, tails: els[els.length - 1].tails });
  }
  return views;
}

function unitView(u: Unit): ElementView {
  const heads = [u];
  const tails = [u];
  // `curl x | bash -c "sh"`: the inner line's commands read/write this element's stdio
  if (u.inner) for (const i of u.inner) (heads.push(i), tails.push(i));
  return { heads, tails };
}

function makeUnit(a: Analysis, lw: LexWord[], vars: Readonly<Record<string, string>>, depth: number): Unit | null {
  let k = 0;
  for (; k < lw.length; k++) {
    const w = lw[k];
    if (RESERVED.has(w.text) && w.q.every((x) => x === 0)) continue;
    const m = ASSIGN.exec(w.text);
    if (m && w.q.slice(0, m[0].length).every((x) => x === 0)) continue;
    break;
  }
  if (k >= lw.length) return null;
  // `case x in`, `for i in a b`, `select …`, `esac` run no command of their own (their
  // substitutions were collected by the lexer): no unit, so allowlists need no rule for them
  if (NO_COMMAND.has(lw[k].text) && lw[k].q.every((x) => x === 0)) return null;
  const words = lw.slice(k).map((w) => w.text);
  const forms: string[][] = [];
  const allowForms: string[][] = [];
  let cur = words;
  let transparent = true;
  let inner: Unit[] | null = null;
  let innerTransparent = false;
  for (let hop = 0; hop < 16; hop++) {
    const nested = shellLine(cur);
    if (nested !== null && inner === null) {
      // inner units are reported (a.units) but are not roots: the wrapper unit stands for them
      inner = addLine(a, nested, vars, depth + 1);
      innerTransparent = transparent;
    }
    const next = unwrap(cur);
    if (next === null || next.words.length === 0) break;
    transparent &&= next.transparent;
    // `env X=1 { cmd; }` / `nohup X=1 cmd` fail to run cmd, but over-matching is the safe side:
    // drop reserved words and assignments there too
    while (next.words.length > 1 && (RESERVED.has(next.words[0]) || ASSIGN.test(next.words[0]))) next.words = next.words.slice(1);
    forms.push(next.words);
    if (transparent) allowForms.push(next.words);
    cur = next.words;
  }
  const u: Unit = { words, forms, allowForms, inner, innerTransparent, text: words.map(shellQuote).join(" ") };
  a.units.push(u);
  return u;
}

// ---------------------------------------------------------------------------------------------
// Wrappers: commands that run another command given as their arguments

interface Wrapper {
  /** may an allow pattern matching the inner command allow the whole (env/nohup yes, sudo no) */
  transparent: boolean;
  /** options that take a separate argument */
  argOpts?: string[];
  /** positional arguments before the command (timeout DURATION, chroot DIR) */
  positional?: number;
  /** NAME=VALUE arguments may precede the command (env) */
  assigns?: boolean;
  /** options that mean "no command is run" (command -v) */
  stop?: string[];
}

const WRAPPERS: Record<string, Wrapper> = {
  sudo: { transparent: false, argOpts: ["-u", "-g", "-h", "-p", "-C", "-D", "-r", "-t", "-U", "-T", "--user", "--group", "--host", "--prompt", "--chdir", "--role", "--type", "--other-user", "--close-from", "--command-timeout"], assigns: true },
  doas: { transparent: false, argOpts: ["-u", "-C"] },
  env: { transparent: true, argOpts: ["-u", "-C", "--unset", "--chdir"], assigns: true },
  nohup: { transparent: true },
  exec: { transparent: true, argOpts: ["-a"] },
  command: { transparent: true, stop: ["-v", "-V"] },
  builtin: { transparent: true },
  time: { transparent: true, argOpts: ["-f", "-o", "--format", "--output"] },
  nice: { transparent: true, argOpts: ["-n", "--adjustment"] },
  ionice: { transparent: true, argOpts: ["-c", "-n", "-p", "-P", "-u", "--class", "--classdata"] },
  timeout: { transparent: true, argOpts: ["-s", "-k", "--signal", "--kill-after"], positional: 1 },
  stdbuf: { transparent: true, argOpts: ["-i", "-o", "-e"] },
  setsid: { transparent: true },
  unbuffer: { transparent: true },
  busybox: { transparent: true },
  xargs: { transparent: false, argOpts: ["-I", "-n", "-P", "-d", "-L", "-s", "-a", "-E", "--max-args", "--max-procs", "--delimiter", "--arg-file", "--replace"] },
  chroot: { transparent: false, argOpts: ["--userspec", "--groups"], positional: 1 },
  flock: { transparent: true, argOpts: ["-w", "-E", "--timeout", "--conflict-exit-code"], positional: 1 },
  strace: { transparent: false, argOpts: ["-e", "-o", "-p", "-s", "-u", "-E", "-P", "-I", "-a", "-b", "-X", "-O", "-S", "-U"] },
};

function unwrap(words: string[]): { words: string[]; transparent: boolean } | null {
  const name = basename(words[0]);
  if (name === "find") {
    const k = words.findIndex((w) => w === "-exec" || w === "-execdir" || w === "-ok" || w === "-okdir");
    if (k < 0) return null;
    let end = k + 1;
    while (end < words.length && words[end] !== ";" && words[end] !== "+") end++;
    return { words: words.slice(k + 1, end).filter((w) => w !== "{}"), transparent: false };
  }
  const w = WRAPPERS[name];
  if (!w) return null;
  let k = 1;
  let positional = w.positional ?? 0;
  while (k < words.length) {
    const a = words[k];
    if (a === "--") {
      k++;
      break;
    }
    if (w.stop?.includes(a)) return null;
    if (a.startsWith("-") && a.length > 1) {
      const opt = a.includes("=") ? a.slice(0, a.indexOf("=")) : a;
      k += w.argOpts?.includes(opt) && !a.includes("=") ? 2 : 1;
      continue;
    }
    if (w.assigns && ASSIGN.test(a)) {
      k++;
      continue;
    }
    if (positional > 0) {
      positional--;
      k++;
      continue;
    }
    break;
  }
  return { words: words.slice(k), transparent: w.transparent };
}

const SHELLS = new Set(["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "posh"]);
const SHELL_ARG_OPTS = new Set(["-o", "+o", "-O", "+O", "--rcfile", "--init-file"]);

/** The command string a shell-ish command runs (`bash -lc "…"`, `eval …`, `su -c …`), or null. */
function shellLine(words: string[]): string | null {
  const name = basename(words[0]);
  if (name === "eval") return words.length > 1 ? words.slice(1).join(" ") : null;
  if (name === "su") {
    for (let k = 1; k < words.length; k++) {
      if ((words[k] === "-c" || words[k] === "--command") && k + 1 < words.length) return words[k + 1];
      if (words[k].startsWith("--command=")) return words[k].slice("--command=".length);
    }
    return null;
  }
  if (!SHELLS.has(name)) return null;
  let c = false;
  for (let k = 1; k < words.length; k++) {
    const a = words[k];
    if (a === "--" || a === "-") return c && k + 1 < words.length ? words[k + 1] : null;
    if (SHELL_ARG_OPTS.has(a)) {
      k++;
      continue;
    }
    if ((a.startsWith("-") || a.startsWith("+")) && a.length > 1) {
      if (!a.startsWith("--") && a.slice(1).includes("c")) c = true;
      continue;
    }
    return c ? a : null;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Rule sets: compiled patterns indexed by command name (so 1,000 rules cost a map lookup)

export interface RuleMatch {
  pattern: CompiledPattern;
  unit: Unit;
}

export class RuleSet {
  private readonly byName = new Map<string, CompiledPattern[]>();
  private readonly byPath = new Map<string, CompiledPattern[]>();
  private readonly generic: CompiledPattern[] = [];
  private readonly pipes: CompiledPattern[] = [];
  readonly size: number;

  constructor(readonly patterns: readonly CompiledPattern[]) {
    this.size = patterns.length;
    for (const p of patterns) {
      if (p.elements.length > 1) {
        this.pipes.push(p);
        continue;
      }
      const first = p.elements[0][0];
      if (first?.kind === "lit") {
        const map = first.slash ? this.byPath : this.byName;
        const arr = map.get(first.text) ?? [];
        arr.push(p);
        map.set(first.text, arr);
      } else this.generic.push(p);
    }
  }

  /** The first single-command pattern matching one of `forms`. */
  private matchForms(forms: readonly string[][]): CompiledPattern | null {
    for (const words of forms) {
      const cands = [this.byName.get(basename(words[0])), this.byPath.get(words[0]), this.generic];
      for (const list of cands) {
        if (!list) continue;
        for (const p of list) if (matchWords(p.elements[0], words)) return p;
      }
    }
    return null;
  }

  private unitForms(u: Unit): string[][] {
    return u.forms.length === 0 ? [u.words] : [u.words, ...u.forms];
  }

  /** Any unit (through any wrapper) or any pipeline matching: for denied / isolated / require_approval. */
  firstMatch(a: Analysis): RuleMatch | null {
    if (this.size === 0) return null;
    for (const u of a.units) {
      const p = this.matchForms(this.unitForms(u));
      if (p) return { pattern: p, unit: u };
    }
    for (const p of this.pipes) {
      const hit = this.matchPipe(p, a);
      if (hit) return { pattern: p, unit: hit[0] };
    }
    return null;
  }

  /** Where pipeline pattern `p` matches: the units it covers, or null. */
  private matchPipe(p: CompiledPattern, a: Analysis): Unit[] | null {
    const k = p.elements.length;
    const hitIn = (items: Item[], units: Unit[], also?: Unit[]): Unit | null => {
      for (const u of units) {
        if (also && !also.includes(u)) continue;
        for (const f of this.unitForms(u)) if (matchWords(items, f)) return u;
      }
      return null;
    };
    for (const els of a.pipes) {
      for (let i = 0; i + k <= els.length; i++) {
        const covered: Unit[] = [];
        let ok = true;
        for (let j = 0; j < k && ok; j++) {
          const el = els[i + j];
          const u =
            j === 0 ? hitIn(p.elements[j], el.tails) : j === k - 1 ? hitIn(p.elements[j], el.heads) : hitIn(p.elements[j], el.heads, el.tails);
          if (u) covered.push(u);
          else ok = false;
        }
        if (ok) return covered;
      }
    }
    return null;
  }

  /** For allowed / auto_approve: the first root unit that no pattern covers, or null when all are covered. */
  firstUncovered(a: Analysis): Unit | null {
    const covered = new Set<Unit>();
    for (const p of this.pipes) {
      const hit = this.matchPipe(p, a);
      if (hit) for (const u of hit) covered.add(u);
    }
    const allowed = (u: Unit): boolean => {
      if (covered.has(u)) return true;
      if (this.matchForms(u.allowForms.length === 0 ? [u.words] : [u.words, ...u.allowForms])) return true;
      return u.inner !== null && u.innerTransparent && u.inner.length > 0 && u.inner.every(allowed);
    };
    for (const u of a.roots) if (!allowed(u)) return u;
    return null;
  }
}
