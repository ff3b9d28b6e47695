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
import { MAX_DEPTH, parseLine, shellQuote, type LexWord, type List, type SimpleCmd, type StdinSource } from "./_lexer.ts";

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
export function matchWords(items: Item[], words: readonly string[], firstIsCommand = true): boolean {
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
    if (p < m && itemMatches(items[p], words[w], firstIsCommand && w === 0)) {
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
  /**
   * Why this command runs code the policy cannot see before it runs (null: it can): a shell
   * reading its commands from a pipe or the terminal, code built at run time (`bash -c "$X"`,
   * `eval "$(…)"`), a command name only known at run time (`$X`, `$(…)`, `xargs -I{} {}`).
   * evaluate.ts decides such units as docs/POLICY.md "Unknown code" says.
   */
  unknown: string | null;
  /** command words holding an unquoted glob (`/usr/bin/c[u]rl`), by form (`words` or one of `forms`) */
  globs: Map<readonly string[], CommandGlob> | null;
}

/** What a globbed command word could expand to: regexes over a basename and over a whole path. */
export interface CommandGlob {
  base: RegExp;
  full: RegExp;
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
  /** a brace expansion too large to check (more than MAX_BRACE_WORDS words) */
  tooBig: boolean;
}

const ASSIGN = /^[A-Za-z_][A-Za-z0-9_]*\+?=/;
// `time` is not here: it takes options (`time -p cmd`), the wrapper table handles it
const NO_COMMAND = new Set(["case", "esac", "for", "select"]);
const RESERVED = new Set(["!", "{", "}", "if", "then", "elif", "else", "fi", "do", "done", "while", "until", "function", "coproc"]);

export function analyze(line: string, vars: Readonly<Record<string, string>>): Analysis {
  const a: Analysis = { units: [], roots: [], pipes: [], operators: false, redirections: false, tooDeep: false, tooBig: false };
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
  a.tooBig ||= out.tooBig;
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
      const u = makeUnit(a, el.cmd, vars, depth);
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

const isActive = (w: LexWord): boolean => w.q.every((x) => x === 0);
const isDynamic = (w: LexWord): boolean => w.q.indexOf(2) >= 0;
const texts = (ws: readonly LexWord[]): string[] => ws.map((w) => w.text);

function makeUnit(a: Analysis, cmd: SimpleCmd, vars: Readonly<Record<string, string>>, depth: number): Unit | null {
  const lw = cmd.words;
  let k = 0;
  for (; k < lw.length; k++) {
    const w = lw[k];
    if (RESERVED.has(w.text) && isActive(w)) continue;
    const m = ASSIGN.exec(w.text);
    if (m && w.q.slice(0, m[0].length).every((x) => x === 0)) continue;
    break;
  }
  if (k >= lw.length) return null;
  // `case x in`, `for i in a b`, `select …`, `esac` run no command of their own (their
  // substitutions were collected by the lexer): no unit, so allowlists need no rule for them
  if (NO_COMMAND.has(lw[k].text) && isActive(lw[k])) return null;
  const first = lw.slice(k);
  const words = texts(first);
  const forms: string[][] = [];
  const allowForms: string[][] = [];
  let unknown: string | null = null;
  let globs: Map<readonly string[], CommandGlob> | null = null;
  // the command name: only known at run time (unknown code), or a glob (every name it could match)
  if (isDynamic(first[0])) unknown = dynamicName(first[0]);
  let g = commandGlob(first[0]);
  if (g) (globs = new Map()).set(words, g);
  let cur = first;
  let transparent = true;
  let inner: Unit[] | null = null;
  let innerTransparent = false;
  for (let hop = 0; hop < 16; hop++) {
    if (inner === null && unknown === null) {
      const code = resolveCode(shellCode(cur), cmd.stdin, basename(cur[0].text));
      if (code !== null) {
        if (code.unknown !== null) unknown = code.unknown;
        // inner units are reported (a.units) but are not roots: the wrapper unit stands for them
        if (code.text !== null) {
          inner = addLine(a, code.text, vars, depth + 1);
          innerTransparent = transparent;
        }
      }
    }
    const next = unwrap(cur);
    if (next === null) break;
    if (next.words.length === 0) {
      // `chroot DIR`, `su`, `sudo -s`, `unshare`: the wrapper starts an interactive shell on stdin
      if (next.shell && unknown === null && inner === null) {
        const code = resolveCode({ kind: "stdin" }, cmd.stdin, basename(cur[0].text));
        if (code?.unknown) unknown = code.unknown;
        if (code?.text != null) inner = addLine(a, code.text, vars, depth + 1);
      }
      break;
    }
    transparent &&= next.transparent;
    let nw = next.words;
    // `env X=1 { cmd; }` / `nohup X=1 cmd` fail to run cmd, but over-matching is the safe side:
    // drop reserved words and assignments there too
    while (nw.length > 1 && (RESERVED.has(nw[0].text) || ASSIGN.test(nw[0].text))) nw = nw.slice(1);
    const form = texts(nw);
    forms.push(form);
    if (transparent) allowForms.push(form);
    if (unknown === null && isDynamic(nw[0])) unknown = dynamicName(nw[0]);
    g = commandGlob(nw[0]);
    if (g) (globs ??= new Map()).set(form, g);
    cur = nw;
  }
  const u: Unit = { words, forms, allowForms, inner, innerTransparent, text: words.map(shellQuote).join(" "), unknown, globs };
  a.units.push(u);
  return u;
}

const dynamicName = (w: LexWord): string => `the command name ${shellQuote(w.text)} is only known when it runs`;

// ---------------------------------------------------------------------------------------------
// Globs in a command word: `/usr/bin/c[u]rl`, `cur?` (bash resolves them against the files of
// the world when the command runs). The broker cannot know those files (the world's view is not
// the host's), so the word is taken to be EVERY name it could match: a deny pattern for any such
// name matches (RuleSet), and an allowlist never covers it. Case is ignored (`nocaseglob`).

function commandGlob(w: LexWord): CommandGlob | null {
  const t = w.text;
  if (t.indexOf("*") < 0 && t.indexOf("?") < 0 && t.indexOf("[") < 0) return null;
  let glob = false;
  for (let k = 0; k < w.text.length; k++) if (w.q[k] === 0 && "*?[".includes(w.text[k])) glob = true;
  if (!glob) return null;
  const slash = w.text.lastIndexOf("/");
  return { base: globRegex(w, slash + 1, w.text.length), full: globRegex(w, 0, w.text.length) };
}

const POSIX_CLASS: Record<string, string> = {
  alpha: "A-Za-z", digit: "0-9", alnum: "A-Za-z0-9", upper: "A-Z", lower: "a-z", space: " \\t\\n\\r\\f\\v", blank: " \\t",
  punct: "!-\\/:-@\\[-`{-~", xdigit: "0-9A-Fa-f", word: "A-Za-z0-9_", print: " -~", graph: "!-~", cntrl: "\\x00-\\x1f",
};

/** Pathname-glob semantics over text[a, b): `*` and `?` never match `/`; `[…]` with `!`/`^`, ranges and POSIX classes. */
function globRegex(w: LexWord, a: number, b: number): RegExp {
  const t = w.text;
  let re = "";
  for (let k = a; k < b; k++) {
    const c = t[k];
    if (w.q[k] !== 0) re += escapeRe(c);
    else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "[") {
      // find the closing `]` (a `]` right after `[`, `[!` or `[^` is a member)
      let j = k + 1;
      if (t[j] === "!" || t[j] === "^") j++;
      if (t[j] === "]") j++;
      while (j < b && t[j] !== "]") j += t[j] === "[" && t[j + 1] === ":" ? Math.max(1, t.indexOf(":]", j) + 2 - j) : 1;
      if (j >= b) {
        re += "\\[";
        continue;
      }
      let body = t.slice(k + 1, j);
      const neg = body[0] === "!" || body[0] === "^";
      if (neg) body = body.slice(1);
      if (/\[[=.]/.test(body)) re += "[^/]"; // equivalence classes / collating symbols: any one character
      else {
        const set = body.replace(/\[:([a-z]+):\]|([\\\]^])/g, (_m, cls: string | undefined, ch: string | undefined) => (cls ? (POSIX_CLASS[cls] ?? "\\s\\S") : `\\${ch}`));
        re += `[${neg ? "^/" : ""}${set}]`;
      }
      k = j;
    } else re += escapeRe(c);
  }
  try {
    return new RegExp(`^${re}$`, "is");
  } catch {
    return /^/s; // a class bash reads differently from us (`[z-a]`…): assume it could match any name
  }
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
  /** with no command left, the wrapper starts an interactive shell (chroot DIR, su, sudo -s) */
  shell?: boolean;
}

const WRAPPERS: Record<string, Wrapper> = {
  sudo: { transparent: false, argOpts: ["-u", "-g", "-h", "-p", "-C", "-D", "-r", "-t", "-U", "-T", "-R", "--user", "--group", "--host", "--prompt", "--chdir", "--role", "--type", "--other-user", "--close-from", "--command-timeout", "--chroot"], assigns: true, shell: true, stop: ["-l", "-v", "-k", "-K", "-V", "--list", "--validate", "--version", "-e", "--edit"] },
  doas: { transparent: false, argOpts: ["-u", "-C"], shell: true },
  pkexec: { transparent: false, argOpts: ["--user"], shell: true },
  env: { transparent: true, argOpts: ["-u", "-C", "-P", "-a", "--unset", "--chdir", "--argv0", "--default-signal", "--ignore-signal", "--block-signal"], assigns: true },
  nohup: { transparent: true },
  exec: { transparent: true, argOpts: ["-a"] },
  command: { transparent: true, stop: ["-v", "-V"] },
  builtin: { transparent: true },
  time: { transparent: true, argOpts: ["-f", "-o", "--format", "--output"] },
  nice: { transparent: true, argOpts: ["-n", "--adjustment"] },
  ionice: { transparent: true, argOpts: ["-c", "-n", "-p", "-P", "-u", "--class", "--classdata", "--pid", "--pgid", "--uid"] },
  timeout: { transparent: true, argOpts: ["-s", "-k", "--signal", "--kill-after"], positional: 1 },
  stdbuf: { transparent: true, argOpts: ["-i", "-o", "-e", "--input", "--output", "--error"] },
  setsid: { transparent: true },
  unbuffer: { transparent: true },
  caffeinate: { transparent: true, argOpts: ["-t", "-w"] },
  taskset: { transparent: true, argOpts: [], positional: 1 },
  chrt: { transparent: true, argOpts: ["-T", "-P", "-D", "--sched-runtime", "--sched-period", "--sched-deadline"], positional: 1 },
  prlimit: { transparent: true, argOpts: ["-p", "--pid"] },
  busybox: { transparent: true },
  toybox: { transparent: true },
  flock: { transparent: true, argOpts: ["-w", "-E", "--timeout", "--conflict-exit-code"], positional: 1 },
  xargs: { transparent: false, argOpts: ["-I", "-n", "-P", "-d", "-L", "-s", "-a", "-E", "--max-args", "--max-procs", "--delimiter", "--arg-file", "--replace", "--max-lines", "--max-chars", "--eof", "--process-slot-var"] },
  chroot: { transparent: false, argOpts: ["--userspec", "--groups"], positional: 1, shell: true },
  newgrp: { transparent: false, positional: 1, shell: true },
  unshare: { transparent: false, argOpts: ["-S", "-G", "-R", "-w", "--setuid", "--setgid", "--root", "--wd", "--propagation", "--setgroups", "--map-user", "--map-group", "--map-users", "--map-groups"], shell: true },
  nsenter: { transparent: false, argOpts: ["-t", "-S", "-G", "--target", "--setuid", "--setgid"], shell: true },
  runuser: { transparent: false, argOpts: ["-u", "-g", "-G", "-s", "-w", "--user", "--group", "--supp-group", "--shell", "--whitelist-environment"], shell: true },
  "systemd-run": { transparent: false, argOpts: ["-p", "-E", "-M", "-H", "-u", "--unit", "--property", "--setenv", "--machine", "--host", "--uid", "--gid", "--nice", "--working-directory", "--description", "--slice", "--on-calendar"] },
  strace: { transparent: false, argOpts: ["-e", "-o", "-p", "-s", "-u", "-E", "-P", "-I", "-a", "-b", "-X", "-O", "-S", "-U"] },
  ltrace: { transparent: false, argOpts: ["-e", "-o", "-p", "-s", "-u", "-n", "-a", "-A", "-D", "-F", "-l", "-x", "-L"] },
  proxychains: { transparent: true, argOpts: ["-f"] },
  proxychains4: { transparent: true, argOpts: ["-f"] },
  torsocks: { transparent: true, argOpts: ["-u", "-p", "-a", "-P"] },
  watch: { transparent: true, argOpts: ["-n", "--interval", "-q", "--equexit"] },
};

/** A dynamic stand-in for `{}` / the xargs replace string in the command position. */
const dynamicWord = (text: string): LexWord => ({ text, q: new Array<number>(text.length).fill(2), quoted: false });

function unwrap(words: LexWord[]): { words: LexWord[]; transparent: boolean; shell?: boolean } | null {
  const name = basename(words[0].text);
  if (name === "find") {
    const k = words.findIndex((w) => w.text === "-exec" || w.text === "-execdir" || w.text === "-ok" || w.text === "-okdir");
    if (k < 0) return null;
    let end = k + 1;
    while (end < words.length && words[end].text !== ";" && words[end].text !== "+") end++;
    const cmd = words.slice(k + 1, end);
    // `{}` as the command: whatever file find found runs (unknown); as an argument it is dropped
    return { words: cmd.filter((w, i) => i === 0 || w.text !== "{}").map((w, i) => (i === 0 && w.text === "{}" ? dynamicWord("{}") : w)), transparent: false };
  }
  if (name === "ip") {
    // `ip netns exec NS cmd`, `ip vrf exec NAME cmd`
    const k = words.findIndex((w) => w.text === "exec");
    if (k < 2 || !["netns", "vrf", "-n"].some((x) => words.slice(1, k).some((w) => w.text === x))) return null;
    return { words: words.slice(k + 2), transparent: false };
  }
  if (name === "runuser" && !words.some((w) => w.text === "-u" || w.text === "--user" || w.text.startsWith("--user="))) return { words: [], transparent: false, shell: !hasShellCommandOpt(words) }; // `runuser USER [-c …]`: su-like
  if (name === "su") return { words: [], transparent: false, shell: !hasShellCommandOpt(words) };
  const w = WRAPPERS[name];
  if (!w) return null;
  let k = 1;
  let positional = w.positional ?? 0;
  let replace: string | null = null; // xargs -I R
  let shellOpt = false; // sudo -s / -i
  for (; k < words.length; k++) {
    const a = words[k].text;
    if (a === "--") {
      k++;
      break;
    }
    if (w.stop?.includes(a)) return null;
    if (name === "env" && (a === "-S" || a === "--split-string" || a.startsWith("--split-string=") || (a.startsWith("-S") && a.length > 2) || /^-[a-zA-Z0-9]*S/.test(a))) {
      // env -S 'cmd args': the string is split into words, which env then reads like its own arguments
      const attached = a.startsWith("--split-string=") ? a.slice(15) : /^-[a-zA-Z0-9]*S./.test(a) ? a.slice(a.indexOf("S") + 1) : null;
      const src = attached !== null ? { text: attached, q: words[k].q.slice(words[k].text.length - attached.length), quoted: false } : words[k + 1];
      if (!src) return null;
      const split = splitEnvString(src);
      return unwrap([words[0], ...words.slice(1, k), ...split, ...words.slice(k + (attached !== null ? 1 : 2))]);
    }
    if (name === "xargs") {
      if (a === "-I" || a === "--replace") replace = words[k + 1]?.text ?? "{}";
      else if (a.startsWith("-I") && a.length > 2) replace = a.slice(2);
      else if (a === "-i" || a === "--replace=") replace = "{}";
      else if (a.startsWith("--replace=")) replace = a.slice(10);
      else if (a.startsWith("-i") && a.length > 2) replace = a.slice(2);
    }
    if ((name === "sudo" || name === "doas") && /^-[a-zA-Z]*[si]/.test(a) && !a.startsWith("--")) shellOpt = true;
    if (a.startsWith("-") && a.length > 1) {
      const opt = a.includes("=") ? a.slice(0, a.indexOf("=")) : a;
      if (w.argOpts?.includes(opt) && !a.includes("=")) k++;
      continue;
    }
    if (w.assigns && ASSIGN.test(a)) continue;
    if (positional > 0) {
      positional--;
      continue;
    }
    break;
  }
  let rest = words.slice(k);
  if (replace !== null && rest.length > 0 && rest[0].text.includes(replace)) rest = [dynamicWord(rest[0].text), ...rest.slice(1)];
  return { words: rest, transparent: w.transparent, shell: w.shell === true && (name !== "sudo" || shellOpt) };
}

/** `env -S` splitting: blanks separate, '…' and "…" quote, `\` escapes, `${VAR}` is dynamic. */
function splitEnvString(src: LexWord): LexWord[] {
  const t = src.text;
  const out: LexWord[] = [];
  let cur: LexWord | null = null;
  const add = (c: string, q: number): void => {
    cur ??= { text: "", q: [], quoted: false };
    cur.text += c;
    cur.q.push(q);
  };
  for (let i = 0; i < t.length; i++) {
    const c = t[i];
    const dyn = src.q[i] === 2;
    if (!dyn && (c === " " || c === "\t" || c === "\n")) {
      if (cur) out.push(cur);
      cur = null;
    } else if (!dyn && c === "'") {
      const e = t.indexOf("'", i + 1);
      const end = e < 0 ? t.length : e;
      cur ??= { text: "", q: [], quoted: false };
      for (let j = i + 1; j < end; j++) add(t[j], 1);
      i = end;
    } else if (!dyn && c === '"') {
      cur ??= { text: "", q: [], quoted: false };
      let j = i + 1;
      for (; j < t.length && t[j] !== '"'; j++) {
        if (t[j] === "\\" && j + 1 < t.length) add(t[++j], 1);
        else add(t[j], t[j] === "$" ? 2 : 1);
      }
      i = j;
    } else if (!dyn && c === "\\" && i + 1 < t.length) add(t[++i], 1);
    else if (!dyn && c === "$" && t[i + 1] === "{") {
      const e = t.indexOf("}", i);
      const end = e < 0 ? t.length - 1 : e;
      for (let j = i; j <= end; j++) add(t[j], 2);
      i = end;
    } else add(c, dyn ? 2 : src.q[i] ?? 0);
  }
  if (cur) out.push(cur);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Commands that run shell code: `bash -c CODE`, `eval …`, `su -c`, `flock … -c`, `script -c`,
// `watch …`, `source FILE`, `alias x=CODE`, `trap CODE SIG`, and shells reading their commands
// from stdin (then the here-string / here-document text is the code, if the line holds it).

const SHELLS = new Set(["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "posh", "rbash", "fish", "tcsh", "csh", "ksh93", "pdksh", "oksh", "loksh", "lksh", "hush"]);
const SHELL_ARG_OPTS = new Set(["-o", "+o", "-O", "+O", "--rcfile", "--init-file", "-C", "--init-command"]);

/** `bash5.2`, `zsh-5.9` → the shell's name, or null when it is no shell. */
function shellName(name: string): string | null {
  if (SHELLS.has(name)) return name;
  if (name.indexOf("sh") < 0) return null;
  const m = /^([a-z0-9]*?sh)[-.]?\d[\d.]*$/.exec(name);
  return m && SHELLS.has(m[1]) ? m[1] : null;
}

type ShellCode =
  /** CODE is given in the line (may be built at run time: `dynamic`) */
  | { kind: "code"; text: string; dynamic: boolean }
  /** the commands come from stdin */
  | { kind: "stdin" }
  | { kind: "unknown"; why: string }
  | null;

const codeOf = (w: LexWord | undefined, who: string): ShellCode =>
  w === undefined ? { kind: "unknown", why: `${who} gets its code only when it runs` } : { kind: "code", text: w.text, dynamic: isDynamic(w) };

/** Devices that are the process's stdin. */
const STDIN_DEVICE = /^(?:\/dev\/stdin|\/dev\/fd\/0|\/proc\/(?:self|thread-self|\d+)\/fd\/0)$/;

/** A script operand (`bash FILE`, `source FILE`): a plain file is a script (not visible), a device or process substitution is not. */
function scriptSource(w: LexWord, who: string): ShellCode {
  if (isDynamic(w) && /^[<>]\(/.test(w.text)) return { kind: "unknown", why: `${who} runs a script produced by a process substitution` };
  if (isDynamic(w)) return { kind: "unknown", why: `${who} runs a script whose path is only known when it runs` };
  if (STDIN_DEVICE.test(w.text)) return { kind: "stdin" };
  if (/^\/dev\/(?:fd\/|tcp\/|udp\/)|^\/proc\/[^/]+\/fd\//.test(w.text)) return { kind: "unknown", why: `${who} runs a script read from ${w.text}` };
  return null; // a script file: its contents are not visible to a command policy (docs/POLICY.md)
}

/** getopt-style: the argument of short option `letter` (in a cluster, attached or next word) or a long option. */
function optionArg(words: LexWord[], from: number, letter: string, argLetters: string, longs: string[]): LexWord | undefined | null {
  for (let k = from; k < words.length; k++) {
    const a = words[k].text;
    if (a === "--") return null;
    for (const l of longs) {
      if (a === l) return words[k + 1];
      if (a.startsWith(`${l}=`)) return { text: a.slice(l.length + 1), q: words[k].q.slice(l.length + 1), quoted: false };
    }
    if (a.startsWith("-") && !a.startsWith("--") && a.length > 1) {
      for (let p = 1; p < a.length; p++) {
        if (a[p] === letter) return p + 1 < a.length ? { text: a.slice(p + 1), q: words[k].q.slice(p + 1), quoted: false } : words[k + 1];
        if (argLetters.includes(a[p])) {
          if (p + 1 === a.length) k++;
          break;
        }
      }
    }
  }
  return null;
}

function hasShellCommandOpt(words: LexWord[]): boolean {
  return optionArg(words, 1, "c", "sgGw", ["--command", "--session-command"]) !== null;
}

/** The code a shell-ish command runs (or that it reads stdin), or null. */
function shellCode(words: LexWord[]): ShellCode {
  const name = basename(words[0].text);
  switch (name) {
    case "eval":
      if (words.length < 2) return null;
      return { kind: "code", text: texts(words.slice(1)).join(" "), dynamic: words.slice(1).some(isDynamic) };
    case "su":
    case "runuser": {
      const c = optionArg(words, 1, "c", "sgGwu", ["--command", "--session-command"]);
      return c === null ? null : codeOf(c, name);
    }
    case "flock": {
      const c = optionArg(words, 1, "c", "wE", ["--command"]);
      return c === null ? null : codeOf(c, name);
    }
    case "script": {
      const c = optionArg(words, 1, "c", "EIOBT", ["--command"]);
      if (c !== null) return codeOf(c, name);
      if (words.some((w) => w.text === "-V" || w.text === "--version" || w.text === "-h" || w.text === "--help")) return null;
      return { kind: "stdin" }; // `script [FILE]` runs an interactive shell on its stdin
    }
    case "sg": {
      // sg [-] GROUP [-c] COMMAND: COMMAND is run by /bin/sh -c
      const rest = words.slice(1).filter((w) => w.text !== "-");
      const cmd = rest[1]?.text === "-c" ? rest[2] : rest[1];
      return rest.length < 2 ? null : codeOf(cmd, name);
    }
    case "watch": {
      // watch [opts] CMD…: the words are joined and run by `sh -c` (unless -x/--exec)
      let k = 1;
      let exec = false;
      for (; k < words.length && words[k].text.startsWith("-"); k++) {
        const a = words[k].text;
        if (a === "--") {
          k++;
          break;
        }
        if (a === "-x" || a === "--exec" || /^-[a-zA-Z]*x/.test(a)) exec = true;
        if (a === "-n" || a === "--interval" || a === "-q" || a === "--equexit") k++;
      }
      const cmd = words.slice(k);
      if (cmd.length === 0 || exec) return null;
      return { kind: "code", text: texts(cmd).join(" "), dynamic: cmd.some(isDynamic) };
    }
    case "source":
    case ".":
      return words.length < 2 ? null : scriptSource(words[1], name);
    case "alias": {
      const defs = words.slice(1).filter((w) => w.text.includes("=") && !w.text.startsWith("-"));
      if (defs.length === 0) return null;
      return { kind: "code", text: defs.map((w) => w.text.slice(w.text.indexOf("=") + 1)).join("\n"), dynamic: defs.some(isDynamic) };
    }
    case "trap": {
      const args = words.slice(1).filter((w) => !/^-[lpP]+$/.test(w.text));
      if (args.length < 2 || args[0].text === "-") return null;
      return codeOf(args[0], name);
    }
  }
  const sh = shellName(name);
  if (sh === null) return null;
  let c = false;
  let s = false;
  let k = 1;
  for (; k < words.length; k++) {
    const a = words[k].text;
    if (a === "--" || a === "-") {
      k++;
      break;
    }
    if (SHELL_ARG_OPTS.has(a)) {
      k++;
      continue;
    }
    if (a === "--command") return codeOf(words[k + 1], sh); // fish
    if (a.startsWith("--command=")) return codeOf({ text: a.slice(10), q: words[k].q.slice(10), quoted: false }, sh);
    if (a === "--version" || a === "--help" || a === "-V") return null;
    if (a.startsWith("--")) continue;
    if ((a.startsWith("-") || a.startsWith("+")) && a.length > 1) {
      if (a[0] === "-" && a.slice(1).includes("c")) c = true;
      if (a[0] === "-" && a.slice(1).includes("s")) s = true;
      continue;
    }
    break;
  }
  if (c) return codeOf(words[k], sh);
  if (s || k >= words.length) return { kind: "stdin" };
  return scriptSource(words[k], sh);
}

/** Where the code of a `stdin` shell comes from: a here-string/document in the line, a script file, or nothing the broker sees. */
function resolveCode(code: ShellCode, stdin: StdinSource | undefined, who: string): { text: string | null; unknown: string | null } | null {
  if (code === null) return null;
  if (code.kind === "unknown") return { text: null, unknown: code.why };
  if (code.kind === "code") return { text: code.text, unknown: code.dynamic ? `the code ${who} runs is built when it runs` : null };
  if (stdin?.kind === "text") return { text: stdin.text, unknown: stdin.dynamic ? `the code ${who} reads from a here-document or here-string is built when it runs` : null };
  if (stdin?.kind === "file") {
    const src = scriptSource(stdin.word, who);
    if (src === null) return null; // `bash < script.sh`: a script file, like `bash script.sh`
    if (src.kind === "unknown") return { text: null, unknown: src.why };
  }
  return { text: null, unknown: `${who} reads its commands from stdin (a pipe, the terminal or a device)` };
}

/**
 * One pattern element against one form whose command word is a glob `g`: the first item
 * matches when the glob could expand to it (a literal name/path; a pattern glob is assumed to
 * overlap), the rest as usual.
 */
function formMatches(items: Item[], words: readonly string[], g: CommandGlob | undefined): boolean {
  if (!g || items.length === 0 || items[0].kind === "any") return matchWords(items, words);
  const it = items[0];
  if (it.kind === "lit" && !(it.slash ? g.full : g.base).test(it.text)) return false;
  return matchWords(items.slice(1), words.slice(1), false);
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

  /** The first single-command pattern matching one of `forms` (a globbed command word: any name it could match). */
  private matchForms(forms: readonly string[][], globs: Unit["globs"]): CompiledPattern | null {
    for (const words of forms) {
      const g = globs?.get(words);
      if (g) {
        for (const p of this.patterns) if (p.elements.length === 1 && formMatches(p.elements[0], words, g)) return p;
        continue;
      }
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
      const p = this.matchForms(this.unitForms(u), u.globs);
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
        for (const f of this.unitForms(u)) if (formMatches(items, f, u.globs?.get(f))) return u;
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
      // a pipeline pattern naming it covers it (`curl * | sh` allowed: sh reads what curl wrote);
      // otherwise code the broker cannot see, or a command word that could be any name, is not covered
      if (covered.has(u)) return true;
      if (u.unknown !== null || u.globs !== null) return false;
      if (this.matchForms(u.allowForms.length === 0 ? [u.words] : [u.words, ...u.allowForms], null)) return true;
      return u.inner !== null && u.innerTransparent && u.inner.length > 0 && u.inner.every(allowed);
    };
    for (const u of a.roots) if (!allowed(u)) return u;
    return null;
  }
}
