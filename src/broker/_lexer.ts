/**
 * A POSIX-shell (bash-flavoured) lexer + parser, just deep enough to find every simple command
 * a line would run. Used for both sides of matching: the command line (lenient: never throws,
 * a line bash would reject is still split as well as possible) and policy patterns (strict:
 * every problem is reported so the policy is rejected at load time).
 *
 * What it understands: blanks, `\` escapes and line continuations, '…', "…" (with `\` `$` and
 * backticks active inside), $'…' (ANSI-C), $"…", `$(…)`, backticks, `$((…))`, `${…}`, `<(…)`,
 * `>(…)`, comments, `;` `&&` `||` `&` newline, `|` `|&`, `( … )` subshells, redirections with
 * optional fd numbers, here-documents (their bodies are scanned for substitutions when the
 * delimiter is unquoted, as bash would expand them).
 *
 * Every `$(…)`, backtick, process substitution and arithmetic substitution body is parsed
 * recursively and its commands are reported in `out.substitutions`: `echo $(rm -rf /)` runs
 * `rm -rf /`, so the broker must see it. Nesting deeper than MAX_DEPTH sets `out.tooDeep`
 * (the broker refuses such lines instead of guessing).
 *
 * Words carry, per character, whether it is "active" (unquoted, so `*` `?` `[` `{` are glob or
 * brace characters), literal (quoted, escaped or produced by a known expansion) or "dynamic":
 * written as an expansion only the running shell can resolve (`$X`, `$1`, `"$@"`, `$(…)`,
 * backticks, `$((…))`, `<(…)`). Only the variables given in `vars` are expanded (`$HOME`,
 * `${HOME}`, a leading `~`); every other `$X` stays as written, marked dynamic.
 *
 * Command lines (lenient mode) are brace-expanded like bash does before anything else
 * (`{curl,--version}` → `curl --version`, `c{u,}rl` → `curl crl`, `{1..3}`); patterns (strict
 * mode) are not. Each simple command also records where its stdin comes from when a
 * redirection says so (here-string, here-document body, `< file`), so that a shell reading its
 * commands from stdin can be judged (pattern.ts).
 */

export const MAX_DEPTH = 32;
/** words one brace-expanded word may produce before the line counts as unknown */
export const MAX_BRACE_WORDS = 10_000;
/** longest word (with unquoted braces) that is brace-expanded; a longer one counts as unknown */
export const MAX_BRACE_TEXT = 4096;

export interface LexWord {
  text: string;
  /** per character: 0 = unquoted (glob-active), 1 = literal, 2 = dynamic (an expansion kept as written) */
  q: number[];
  /** the word had quotes or escapes (an empty brace alternative of it is kept, like bash) */
  quoted?: boolean;
}

/** Where a command's stdin comes from, when a redirection says so. */
export type StdinSource =
  /** here-string or here-document: the text it feeds; `dynamic` when the shell expands parts of it first */
  | { kind: "text"; text: string; dynamic: boolean }
  /** `< word` */
  | { kind: "file"; word: LexWord }
  /** `<&N`, `<>` …: some other descriptor */
  | { kind: "other" };

export interface SimpleCmd {
  words: LexWord[];
  stdin: StdinSource | undefined;
}
export type Element = { cmd: SimpleCmd; group?: undefined } | { group: List; cmd?: undefined };
export interface Pipeline {
  elements: Element[];
}
export interface List {
  pipelines: Pipeline[];
}

export interface ParseOut {
  /** bodies of $(…), `…`, <(…), >(…), $((…)) and ${…} substitutions, each a list of its own */
  substitutions: List[];
  /** any of ; && || & | newline-separated commands, subshells or substitutions */
  operators: boolean;
  redirections: boolean;
  tooDeep: boolean;
  /** a brace expansion produced more than MAX_BRACE_WORDS words (not expanded: the line cannot be checked) */
  tooBig: boolean;
  /** only filled in strict mode */
  errors: string[];
}

export interface LexOptions {
  vars: Readonly<Record<string, string>>;
  strict: boolean;
}

const BLANK = new Set([" ", "\t", "\r"]);
const META = new Set([" ", "\t", "\r", "\n", ";", "&", "|", "(", ")", "<", ">"]);
const NAME_START = /[A-Za-z_]/;
const NAME_CHAR = /[A-Za-z0-9_]/;
/** what may appear inside $(( … )) for us to treat it as arithmetic */
const ARITH = /^[\sA-Za-z0-9_+\-*/%<>=!&|^~?:,.()[\]$#{}]*$/;

export function parseLine(s: string, opts: LexOptions): { list: List; out: ParseOut } {
  const out: ParseOut = { substitutions: [], operators: false, redirections: false, tooDeep: false, tooBig: false, errors: [] };
  const p = new Parser(s, opts, out, 0);
  const list = p.parseList(null);
  return { list, out };
}

class Parser {
  i = 0;
  /** readWord saw an unquoted `{` */
  private sawBrace = false;
  private heredocs: { delim: string; strip: boolean; expand: boolean; sink: { kind: "text"; text: string; dynamic: boolean } }[] = [];

  constructor(
    private readonly s: string,
    private readonly opts: LexOptions,
    private readonly out: ParseOut,
    private readonly depth: number,
  ) {}

  private err(msg: string): void {
    if (this.opts.strict) this.out.errors.push(msg);
  }

  /** Parse commands until the end of input or an unmatched `close` (consumed). */
  parseList(close: ")" | null): List {
    const s = this.s;
    const list: List = { pipelines: [] };
    let pipeline: Pipeline = { elements: [] };
    let words: LexWord[] = [];
    let stdin: StdinSource | undefined;
    let pipeOpen = false; // a `|` was seen and needs a right-hand side

    const finishCmd = (): void => {
      if (words.length > 0) pipeline.elements.push({ cmd: { words, stdin } });
      words = [];
      stdin = undefined;
    };
    const braces = !this.opts.strict;
    const finishPipeline = (): void => {
      finishCmd();
      if (pipeline.elements.length > 0) list.pipelines.push(pipeline);
      if (list.pipelines.length > 1) this.out.operators = true;
      pipeline = { elements: [] };
      pipeOpen = false;
    };

    for (;;) {
      this.skipBlanks();
      if (this.i >= s.length) {
        if (close !== null) this.err(`missing \`${close}\``);
        break;
      }
      const c = s[this.i];
      if (c === ")") {
        this.i++;
        if (close === ")") break;
        // `case x in pat) cmd;; esac`: the pattern's `)` ends it, a command follows
        this.err("unexpected `)`");
        finishPipeline();
        continue;
      }
      if (c === "#") {
        // at a word start (we just skipped blanks/operators): a comment to the end of the line
        while (this.i < s.length && s[this.i] !== "\n") this.i++;
        continue;
      }
      if (c === "\n") {
        this.i++;
        finishPipeline();
        this.readHeredocBodies();
        continue;
      }
      if (c === ";") {
        this.i += s[this.i + 1] === ";" ? 2 : 1;
        this.out.operators = true;
        finishPipeline();
        continue;
      }
      if (c === "&") {
        if (s[this.i + 1] === ">") {
          stdin = this.redirection() ?? stdin;
          continue;
        }
        this.i += s[this.i + 1] === "&" ? 2 : 1;
        this.out.operators = true;
        finishPipeline();
        continue;
      }
      if (c === "|") {
        if (s[this.i + 1] === "|") {
          this.i += 2;
          this.out.operators = true;
          finishPipeline();
          continue;
        }
        this.i += s[this.i + 1] === "&" ? 2 : 1;
        this.out.operators = true;
        finishCmd();
        pipeOpen = true;
        continue;
      }
      if (c === "(") {
        this.i++;
        finishCmd();
        this.out.operators = true;
        const inner = this.subList();
        if (inner) pipeline.elements.push({ group: inner });
        continue;
      }
      if ((c === "<" || c === ">") && s[this.i + 1] === "(") {
        words.push(this.processSubstitution());
        continue;
      }
      if (c === "<" || c === ">") {
        stdin = this.redirection() ?? stdin;
        continue;
      }
      if (c >= "0" && c <= "9") {
        let j = this.i;
        while (j < s.length && s[j] >= "0" && s[j] <= "9") j++;
        if ((s[j] === "<" || s[j] === ">") && s[j + 1] !== "(") {
          const fd = Number(s.slice(this.i, j));
          this.i = j;
          stdin = this.redirection(fd) ?? stdin;
          continue;
        }
      }
      this.sawBrace = false;
      const w = this.readWord();
      if (w === null) continue;
      // (a flag set while reading: scanning the built-up text would flatten it)
      if (braces && this.sawBrace) this.braceWords(words, w);
      else words.push(w);
    }
    if (pipeOpen && words.length === 0 && pipeline.elements.length > 0) this.err("`|` without a command after it");
    finishPipeline();
    return list;
  }

  /** Push the brace expansion of `w` (kept out of parseList: its hot loop stays small for the JIT). */
  private braceWords(words: LexWord[], w: LexWord): void {
    const ex = braceExpand(w);
    if (ex === null) {
      this.out.tooBig = true;
      words.push(w);
    } else for (const x of ex) words.push(x);
  }

  private skipBlanks(): void {
    const s = this.s;
    for (;;) {
      if (BLANK.has(s[this.i])) this.i++;
      else if (s[this.i] === "\\" && s[this.i + 1] === "\n") this.i += 2;
      else return;
    }
  }

  /** Parse `$(…)`-style bodies with a deeper parser that shares the input and position. */
  private subList(): List | null {
    if (this.depth + 1 > MAX_DEPTH) {
      this.out.tooDeep = true;
      this.err(`nesting deeper than ${MAX_DEPTH} levels`);
      this.i = this.s.length;
      return null;
    }
    const sub = new Parser(this.s, this.opts, this.out, this.depth + 1);
    sub.i = this.i;
    const list = sub.parseList(")");
    this.i = sub.i;
    return list;
  }

  private processSubstitution(): LexWord {
    const start = this.i;
    this.i += 2;
    this.out.operators = true;
    const list = this.subList();
    if (list) this.out.substitutions.push(list);
    const raw = this.s.slice(start, this.i);
    return { text: raw, q: new Array(raw.length).fill(2), quoted: false };
  }

  /** One redirection; returns the new stdin source when it redirects fd 0. */
  private redirection(fd?: number): StdinSource | undefined {
    const s = this.s;
    this.out.redirections = true;
    const ops = ["&>>", "&>", "<<<", "<<-", "<<", "<>", "<&", ">>", ">&", ">|", "<", ">"];
    const op = ops.find((o) => s.startsWith(o, this.i)) ?? s[this.i];
    this.i += op.length;
    this.skipBlanks();
    // `< <(cmd)`: the target is a process substitution (its commands are collected as usual)
    const target = s[this.i] === "<" && s[this.i + 1] === "(" ? this.processSubstitution() : this.readWord();
    if (!target) {
      this.err(`redirection \`${op}\` without a target`);
      return undefined;
    }
    const toStdin = op[0] === "<" && (fd === undefined || fd === 0);
    if (op === "<<" || op === "<<-") {
      const sink = { kind: "text" as const, text: "", dynamic: false };
      this.heredocs.push({ delim: target.text, strip: op === "<<-", expand: target.q.every((x) => x === 0), sink });
      return toStdin ? sink : undefined;
    }
    if (!toStdin) return undefined;
    if (op === "<<<") return { kind: "text", text: target.text, dynamic: target.q.includes(2) };
    if (op === "<") return { kind: "file", word: target };
    return { kind: "other" };
  }

  /** After a newline: skip pending here-document bodies, scanning expanding ones for substitutions. */
  private readHeredocBodies(): void {
    const s = this.s;
    for (const h of this.heredocs) {
      const bodyStart = this.i;
      let end = s.length;
      let next = s.length;
      let pos = this.i;
      while (pos < s.length) {
        let nl = s.indexOf("\n", pos);
        if (nl < 0) nl = s.length;
        let line = s.slice(pos, nl);
        if (h.strip) line = line.replace(/^\t+/, "");
        if (line === h.delim) {
          end = pos;
          next = Math.min(nl + 1, s.length);
          break;
        }
        pos = nl + 1;
      }
      const body = s.slice(bodyStart, end);
      if (h.expand) this.scanSubstitutions(body);
      h.sink.text = h.strip ? body.replace(/^\t+/gm, "") : body;
      // an unquoted delimiter: the shell expands $…/backticks in the body before it is read
      h.sink.dynamic = h.expand && /[$`]/.test(body);
      this.i = next;
    }
    this.heredocs = [];
  }

  /** Find `$(…)` and backtick substitutions in text that is otherwise not parsed (here-docs, `$((…))`, `${…}`). */
  private scanSubstitutions(text: string): void {
    if (!text.includes("$(") && !text.includes("`")) return;
    if (this.depth + 1 > MAX_DEPTH) {
      this.out.tooDeep = true;
      return;
    }
    const sub = new Parser(text, this.opts, this.out, this.depth + 1);
    while (sub.i < text.length) {
      const c = text[sub.i];
      if (c === "\\") sub.i += 2;
      else if (c === "$" && text[sub.i + 1] === "(" && text[sub.i + 2] !== "(") {
        sub.i += 2;
        this.out.operators = true;
        const list = sub.parseList(")");
        this.out.substitutions.push(list);
      } else if (c === "$" && text[sub.i + 1] === "(") {
        sub.i += 3; // `$((`: keep scanning inside the arithmetic
      } else if (c === "`") {
        const w: LexWord = { text: "", q: [], quoted: false };
        sub.readBacktick(w);
      } else sub.i++;
    }
  }

  private readWord(): LexWord | null {
    const s = this.s;
    const w: LexWord = { text: "", q: [], quoted: false };
    const start = this.i;
    while (this.i < s.length) {
      const c = s[this.i];
      if (META.has(c)) break;
      if (c === "\\") {
        if (s[this.i + 1] === "\n") {
          this.i += 2;
          continue;
        }
        w.quoted = true;
        if (this.i + 1 >= s.length) {
          push(w, "\\", 1);
          this.i++;
          continue;
        }
        push(w, s[this.i + 1], 1);
        this.i += 2;
        continue;
      }
      if (c === "'") {
        w.quoted = true;
        const end = s.indexOf("'", this.i + 1);
        if (end < 0) {
          this.err("unterminated single quote");
          push(w, s.slice(this.i + 1), 1);
          this.i = s.length;
          break;
        }
        push(w, s.slice(this.i + 1, end), 1);
        this.i = end + 1;
        continue;
      }
      if (c === '"') {
        w.quoted = true;
        this.readDouble(w);
        continue;
      }
      if (c === "$") {
        if (s[this.i + 1] === "'" || s[this.i + 1] === '"') w.quoted = true;
        this.dollar(w, false);
        continue;
      }
      if (c === "`") {
        this.readBacktick(w);
        continue;
      }
      if (c === "~" && this.i === start) {
        const n = s[this.i + 1];
        const home = this.opts.vars.HOME;
        if (home !== undefined && (n === undefined || n === "/" || META.has(n))) {
          push(w, home, 1);
          this.i++;
          continue;
        }
      }
      if (c === "{") this.sawBrace = true;
      push(w, c, 0);
      this.i++;
    }
    return this.i > start ? w : null;
  }

  private readDouble(w: LexWord): void {
    const s = this.s;
    this.i++; // opening "
    while (this.i < s.length) {
      const c = s[this.i];
      if (c === '"') {
        this.i++;
        return;
      }
      if (c === "\\") {
        const n = s[this.i + 1];
        if (n === "\n") {
          this.i += 2;
          continue;
        }
        if (n === "$" || n === "`" || n === '"' || n === "\\") {
          push(w, n, 1);
          this.i += 2;
          continue;
        }
        push(w, "\\", 1);
        this.i++;
        continue;
      }
      if (c === "$") {
        this.dollar(w, true);
        continue;
      }
      if (c === "`") {
        this.readBacktick(w);
        continue;
      }
      push(w, c, 1);
      this.i++;
    }
    this.err("unterminated double quote");
  }

  private readBacktick(w: LexWord): void {
    const s = this.s;
    const start = this.i;
    this.i++;
    let inner = "";
    let closed = false;
    while (this.i < s.length) {
      const c = s[this.i];
      if (c === "\\" && (s[this.i + 1] === "`" || s[this.i + 1] === "\\" || s[this.i + 1] === "$")) {
        inner += s[this.i + 1];
        this.i += 2;
        continue;
      }
      if (c === "`") {
        this.i++;
        closed = true;
        break;
      }
      inner += c;
      this.i++;
    }
    if (!closed) this.err("unterminated backtick substitution");
    this.out.operators = true;
    if (this.depth + 1 > MAX_DEPTH) {
      this.out.tooDeep = true;
    } else {
      const sub = new Parser(inner, this.opts, this.out, this.depth + 1);
      this.out.substitutions.push(sub.parseList(null));
    }
    push(w, s.slice(start, this.i), 2);
  }

  private dollar(w: LexWord, inDouble: boolean): void {
    const s = this.s;
    const n = s[this.i + 1];
    if (n === "'" && !inDouble) {
      this.i += 2;
      push(w, this.ansiC(), 1);
      return;
    }
    if (n === '"' && !inDouble) {
      this.i++;
      this.readDouble(w);
      return;
    }
    if (n === "(" && s[this.i + 2] === "(" && this.isArithmetic()) {
      // $(( arithmetic )): not commands, but may hold $(…) which are. Anything that cannot be
      // arithmetic (quotes, backslashes) is read as `$( (subshell) )`, as bash falls back to.
      const start = this.i;
      const end = this.matchParens(this.i + 1);
      this.i = end;
      const raw = s.slice(start, end);
      this.scanSubstitutions(raw.slice(3));
      push(w, raw, 2);
      return;
    }
    if (n === "(") {
      const start = this.i;
      this.i += 2;
      this.out.operators = true;
      const list = this.subList();
      if (list) this.out.substitutions.push(list);
      push(w, s.slice(start, this.i), 2);
      return;
    }
    if (n === "{") {
      const start = this.i;
      let depth = 0;
      let j = this.i + 1;
      for (; j < s.length; j++) {
        if (s[j] === "\\") j++;
        else if (s[j] === "{") depth++;
        else if (s[j] === "}" && --depth === 0) break;
      }
      if (j >= s.length) this.err("unterminated ${");
      const end = Math.min(j + 1, s.length);
      const body = s.slice(start + 2, Math.max(start + 2, end - 1));
      this.i = end;
      const v = this.opts.vars[body];
      if (v !== undefined) push(w, v, 1);
      else {
        this.scanSubstitutions(body);
        push(w, s.slice(start, end), 2);
      }
      return;
    }
    if (n !== undefined && NAME_START.test(n)) {
      let j = this.i + 1;
      while (j < s.length && NAME_CHAR.test(s[j])) j++;
      const name = s.slice(this.i + 1, j);
      const v = this.opts.vars[name];
      if (v !== undefined) push(w, v, 1);
      else push(w, `$${name}`, 2);
      this.i = j;
      return;
    }
    // positional and special parameters: $1 $@ $* $# $? $$ $! $- $0
    if (n !== undefined && /[0-9@*#?$!-]/.test(n)) {
      push(w, `$${n}`, 2);
      this.i += 2;
      return;
    }
    push(w, "$", inDouble ? 1 : 0);
    this.i++;
  }

  /**
   * At `$((`: bash reads arithmetic when the inner `(` closes right before the outer `)`
   * (`$(( 1 + 2 ))`); otherwise (`$((cmd) )`) it is a command substitution of a subshell.
   * Text with quotes or backslashes cannot be arithmetic either: parse it as commands.
   */
  private isArithmetic(): boolean {
    const outerEnd = this.matchParens(this.i + 1, false);
    const innerEnd = this.matchParens(this.i + 2, false);
    return innerEnd === outerEnd - 1 && ARITH.test(this.s.slice(this.i + 3, innerEnd - 1));
  }

  /** From an opening `(` at `open`, the index after its matching `)` (quotes respected). */
  private matchParens(open: number, report = true): number {
    const s = this.s;
    let depth = 0;
    for (let j = open; j < s.length; j++) {
      const c = s[j];
      if (c === "\\") j++;
      else if (c === "'") {
        const e = s.indexOf("'", j + 1);
        j = e < 0 ? s.length : e;
      } else if (c === "(") depth++;
      else if (c === ")" && --depth === 0) return j + 1;
    }
    if (report) this.err("unterminated $((");
    return s.length;
  }

  private ansiC(): string {
    const s = this.s;
    let r = "";
    while (this.i < s.length && s[this.i] !== "'") {
      const c = s[this.i];
      if (c !== "\\") {
        r += c;
        this.i++;
        continue;
      }
      const n = s[this.i + 1];
      this.i += 2;
      const simple: Record<string, string> = { n: "\n", t: "\t", r: "\r", a: "\x07", b: "\b", e: "\x1b", E: "\x1b", f: "\f", v: "\v", "\\": "\\", "'": "'", '"': '"', "?": "?" };
      if (n !== undefined && simple[n] !== undefined) r += simple[n];
      else if (n === "x") {
        const m = /^[0-9a-fA-F]{1,2}/.exec(s.slice(this.i));
        if (m) {
          r += String.fromCharCode(parseInt(m[0], 16));
          this.i += m[0].length;
        } else r += "\\x";
      } else if (n !== undefined && n >= "0" && n <= "7") {
        const m = /^[0-7]{1,3}/.exec(s.slice(this.i - 1))!;
        r += String.fromCharCode(parseInt(m[0], 8));
        this.i += m[0].length - 1;
      } else r += `\\${n ?? ""}`;
    }
    if (this.i >= s.length) this.err("unterminated $'");
    else this.i++;
    return r;
  }
}

function push(w: LexWord, text: string, q: 0 | 1 | 2): void {
  w.text += text;
  for (let k = 0; k < text.length; k++) w.q.push(q);
}

/** Quote a word for display so that the shell would read it back as the same word. */
export function shellQuote(w: string): string {
  if (w === "") return "''";
  if (/^[A-Za-z0-9_\-+=.,/:@%^]+$/.test(w)) return w;
  return `'${w.replace(/'/g, `'\\''`)}'`;
}

// ---------------------------------------------------------------------------------------------
// Brace expansion (bash's first expansion, before variables and globs)

class TooBig extends Error {}

/**
 * Expand the unquoted braces of a word like bash: `{a,b}` alternatives (nested, with a preamble
 * and a postscript), `{x..y[..step]}` sequences of integers (zero-padded like bash) or single
 * letters. A brace with neither a top-level comma nor a valid sequence stays literal; so do
 * quoted braces and `${…}`. Empty results are dropped unless the word had quotes (bash removes
 * unquoted empty words). Returns null when more than MAX_BRACE_WORDS words would result.
 */
export function braceExpand(w: LexWord): LexWord[] | null {
  let active = false;
  for (let k = w.text.indexOf("{"); k >= 0 && !active; k = w.text.indexOf("{", k + 1)) active = w.q[k] === 0;
  if (!active) return [w];
  // finding the braces is quadratic in the worst case: a longer word with unquoted braces is not checked
  if (w.text.length > MAX_BRACE_TEXT) return null;
  const out: LexWord[] = [];
  const rec = (x: LexWord): void => {
    const r = expandOnce(x);
    if (r === null) {
      if (out.length >= MAX_BRACE_WORDS) throw new TooBig();
      out.push(x);
      return;
    }
    for (const y of r) rec(y);
  };
  try {
    rec(w);
  } catch (e) {
    if (e instanceof TooBig) return null;
    throw e;
  }
  if (w.quoted) return out.map((x) => ({ text: x.text, q: x.q, quoted: true }));
  return out.filter((x) => x.text !== "");
}

function sliceWord(x: LexWord, a: number, b: number): LexWord {
  return { text: x.text.slice(a, b), q: x.q.slice(a, b), quoted: false };
}

function concatWords(a: LexWord, b: LexWord, c: LexWord): LexWord {
  return { text: a.text + b.text + c.text, q: a.q.concat(b.q, c.q), quoted: false };
}

/** The first expandable brace of x, expanded one level (null: nothing to expand). */
function expandOnce(x: LexWord): LexWord[] | null {
  const t = x.text;
  const q = x.q;
  for (let i = 0; i < t.length; i++) {
    if (t[i] !== "{" || q[i] !== 0) continue;
    let depth = 0;
    let j = i;
    const commas: number[] = [];
    for (; j < t.length; j++) {
      if (q[j] !== 0) continue;
      if (t[j] === "{") depth++;
      else if (t[j] === "}") {
        if (--depth === 0) break;
      } else if (t[j] === "," && depth === 1) commas.push(j);
    }
    if (j >= t.length) continue; // unmatched: literal, a later brace may still expand
    const pre = sliceWord(x, 0, i);
    const post = sliceWord(x, j + 1, t.length);
    let alts: LexWord[];
    if (commas.length > 0) {
      const bounds = [i, ...commas, j];
      alts = bounds.slice(0, -1).map((b, k) => sliceWord(x, b + 1, bounds[k + 1]));
    } else {
      const body = sliceWord(x, i + 1, j);
      const seq = body.q.every((v) => v === 0) ? sequence(body.text) : null;
      if (seq === null) continue;
      alts = seq.map((v) => ({ text: v, q: new Array<number>(v.length).fill(0), quoted: false }));
    }
    if (alts.length > MAX_BRACE_WORDS) throw new TooBig();
    return alts.map((a) => concatWords(pre, a, post));
  }
  return null;
}

/** `1..5`, `05..1..2`, `a..e`, `Z..a`: the items bash produces, or null when it is no sequence. */
function sequence(body: string): string[] | null {
  const num = /^([-+]?\d+)\.\.([-+]?\d+)(?:\.\.([-+]?\d+))?$/.exec(body);
  const chr = num ? null : /^([A-Za-z])\.\.([A-Za-z])(?:\.\.([-+]?\d+))?$/.exec(body);
  const m = num ?? chr;
  if (!m) return null;
  const step = Math.abs(Number(m[3] ?? 1)) || 1;
  const a = num ? Number(m[1]) : m[1].charCodeAt(0);
  const b = num ? Number(m[2]) : m[2].charCodeAt(0);
  const count = Math.floor(Math.abs(b - a) / step) + 1;
  if (!Number.isSafeInteger(count) || count > MAX_BRACE_WORDS) throw new TooBig();
  const dir = b >= a ? 1 : -1;
  // zero padding: when either end is written with a leading zero, every item has the longest width
  const pad = num && (/^[-+]?0\d/.test(m[1]) || /^[-+]?0\d/.test(m[2])) ? Math.max(m[1].replace("+", "").length, m[2].replace("+", "").length) : 0;
  const items: string[] = [];
  for (let k = 0, v = a; k < count; k++, v += dir * step) {
    if (!num) items.push(String.fromCharCode(v));
    else if (pad === 0) items.push(String(v));
    else items.push(v < 0 ? `-${String(-v).padStart(pad - 1, "0")}` : String(v).padStart(pad, "0"));
  }
  return items;
}
