/**
 * Secrets redaction for command lines written to trace.jsonl.
 *
 * Env values are never written at all (only `env_hash`); this module covers the other leak:
 * secrets typed on the command line. The rules are deliberately greedy — a false positive
 * costs a less precise trace (and a replay that refuses to run, see replay.ts), a false
 * negative leaks a credential into a file that is kept for weeks.
 *
 * Redaction works IN PLACE and never changes the command's shell structure (issue 14 item 6:
 * redacting `--token X; echo sk-…` once swallowed the `;`). Every rule only finds where a
 * secret value starts; where it ends, and what may be replaced, is decided here for all rules:
 *
 * - the context of every character is computed once, reading the line like the shell does
 *   (outside, '…', "…", $'…', `$(…)`/backticks starting code again also inside "…", comments,
 *   here-document bodies);
 * - a value that starts with an opening quote (`--password 'a b;c'`, `PGPASSWORD="x"`) is the
 *   whole quoted string: its content is replaced, the quotes stay;
 * - any other value ends at the first blank, quote, backslash, `$`, backtick, brace or shell
 *   operator (`; & | ( ) < >`) — in every context, so a secret inside `bash -c '…'` code is
 *   cut at the inner `;` too and the inner command keeps its structure;
 * - only characters that are plain text in their context are ever replaced (never a quote, an
 *   escape, a `$`/backtick or — outside quotes — a blank or operator), each maximal run of them
 *   by `[REDACTED]`.
 *
 * So the redacted line tokenizes like the original: same commands, same words, same operators
 * and redirections (tests/unit/trace/redact.test.ts checks it with the broker's own parser, on
 * tables, generated lines and 20,000 lines of random token soup). Passes repeat until nothing
 * changes, so redaction is idempotent.
 */
export const REDACTED = "[REDACTED]";

/** Option names whose value is a secret: `--password=x`, `--password x`, `--api-key x` … */
const SECRET_OPTION =
  "(?:pass(?:word|wd|phrase)?|token|secret|api[-_]?key|access[-_]?key|secret[-_]?key|private[-_]?key|auth(?:[-_]?token)?|client[-_]?secret|credentials?|bearer)";

type Span = [number, number];

/**
 * Quote context per character, scanned like the shell reads the line: 0 code (outside quotes),
 * 1 in '…', 2 in "…", 3 in $'…', 4 a comment or here-document body (plain text); -1 a quote,
 * escape or expansion character (`$`, `${…}`, `$(`, `)`, backticks), -2 an escaped character.
 * `$(…)` and backticks start code again, also inside "…" (`"$(curl -H 'Authorization: …')"`).
 * `open[k]` is 1/2/3 where k opens a '…', "…" or $'…' string.
 */
interface Ctx {
  q: Int8Array;
  open: Int8Array;
}

function contexts(s: string): Ctx {
  /** the end of the text being scanned: the whole line, or a backtick body (which ends at the next backtick, quotes or not) */
  let n = s.length;
  const c = new Int8Array(n);
  const open = new Int8Array(n);
  const heredocs: { delim: string; strip: boolean; expand: boolean }[] = [];
  const escaped = (i: number): number => {
    c[i] = -1;
    if (i + 1 < n) c[i + 1] = -2;
    return i + 2;
  };
  /** `$name`, `${…}`, `$1`…: never replaced */
  const param = (i: number): number => {
    c[i] = -1;
    if (s[i + 1] === "{") {
      let depth = 0;
      let k = i + 1;
      for (; k < n; k++) {
        c[k] = -1;
        if (s[k] === "{") depth++;
        else if (s[k] === "}" && --depth === 0) return k + 1;
      }
      return n;
    }
    let k = i + 1;
    if (k < n && /[0-9@*#?$!-]/.test(s[k])) return ((c[k] = -1), k + 1);
    while (k < n && /[A-Za-z0-9_]/.test(s[k])) c[k++] = -1;
    return k;
  };
  const single = (i: number): number => {
    open[i] = 1;
    c[i++] = -1;
    while (i < n && s[i] !== "'") c[i++] = 1;
    if (i < n) c[i++] = -1;
    return i;
  };
  const ansi = (i: number): number => {
    open[i] = 3;
    c[i++] = -1;
    c[i++] = -1;
    while (i < n && s[i] !== "'") i = s[i] === "\\" ? escaped(i) : ((c[i] = 3), i + 1);
    if (i < n) c[i++] = -1;
    return i;
  };
  const double = (i: number): number => {
    open[i] = 2;
    c[i++] = -1;
    while (i < n && s[i] !== '"') {
      const ch = s[i];
      if (ch === "\\") i = escaped(i);
      else if (ch === "$" && s[i + 1] === "(") {
        c[i] = c[i + 1] = -1;
        i = code(i + 2, ")");
      } else if (ch === "`") i = backtick(i);
      else if (ch === "$") i = param(i);
      else c[i++] = 2;
    }
    if (i < n) c[i++] = -1;
    return i;
  };
  /** the bodies of pending here-documents, after a newline in code */
  const bodies = (i: number): number => {
    for (const h of heredocs.splice(0)) {
      while (i < n) {
        let nl = s.indexOf("\n", i);
        if (nl < 0) nl = n;
        const line = s.slice(i, nl);
        const done = (h.strip ? line.replace(/^\t+/, "") : line) === h.delim;
        for (let k = i; k < nl; k++) c[k] = done ? -1 : h.expand && (s[k] === "$" || s[k] === "`") ? -1 : 4;
        if (nl < n) c[nl] = -1;
        i = nl + 1;
        if (done) break;
      }
    }
    return i;
  };
  /** `…`: like the broker's lexer, the body ends at the next unescaped backtick, then is code */
  function backtick(i: number): number {
    c[i] = -1;
    let e = i + 1;
    while (e < n && s[e] !== "`") e += s[e] === "\\" ? 2 : 1;
    const outer = n;
    n = Math.min(e, outer);
    code(i + 1, null);
    n = outer;
    if (e < n) c[e] = -1;
    return e + 1;
  }
  /** a `#` that starts a comment: at a word start, not right after an escape or a redirection operator */
  const comment = (i: number): boolean => {
    if (i === 0) return true;
    if (!/[\s;&|()]/.test(s[i - 1]) || c[i - 1] === -2) return false;
    let k = i - 1;
    while (k >= 0 && (s[k] === " " || s[k] === "\t")) k--;
    return !(k >= 0 && (s[k] === "<" || s[k] === ">") && c[k] === 0);
  };
  function code(i: number, close: ")" | null): number {
    let depth = 0;
    while (i < n) {
      const ch = s[i];
      if (close === ")" && ch === ")" && depth === 0) return ((c[i] = -1), i + 1);
      if (ch === "\\") i = escaped(i);
      else if (ch === "#" && comment(i)) {
        c[i++] = -1; // the `#` itself stays: a comment must not become a word
        while (i < n && s[i] !== "\n") c[i++] = 4;
      } else if (ch === "'") i = single(i);
      else if (ch === "$" && s[i + 1] === "'") i = ansi(i);
      else if (ch === '"') i = double(i);
      else if (ch === "$" && s[i + 1] === "(") {
        c[i] = c[i + 1] = -1;
        i = code(i + 2, ")");
      } else if (ch === "`") i = backtick(i);
      else if (ch === "$") i = param(i);
      else if (ch === "<" && s[i + 1] === "<" && s[i + 2] !== "<") {
        const m = /^<<(-?)[ \t]*(['"]?)([^\s'";&|()<>]+)\2/.exec(s.slice(i, i + 200));
        if (m) heredocs.push({ delim: m[3], strip: m[1] === "-", expand: m[2] === "" });
        c[i] = c[i + 1] = 0;
        i += 2;
      } else if (ch === "\n" && heredocs.length > 0) {
        c[i] = 0;
        i = bodies(i + 1);
      } else {
        if (close === ")" && ch === "(") depth++;
        else if (close === ")" && ch === ")") depth--;
        c[i++] = 0;
      }
    }
    return n;
  }
  code(0, null);
  return { q: c, open };
}

/** Characters that end an unquoted-style value (in any context). */
const STOP = new Set([" ", "\t", "\n", "\r", "'", '"', "\\", "$", "`", "{", "}", ";", "&", "|", "(", ")", "<", ">"]);

/** May character k be replaced without changing how the line tokenizes? */
function replaceable(s: string, ctx: Ctx, k: number): boolean {
  const q = ctx.q[k];
  if (q < 0) return false;
  if (q === 0) return !STOP.has(s[k]) && !(s[k] === "#" && (k === 0 || /\s/.test(s[k - 1])));
  if (q === 4) return s[k] !== "\n";
  return true;
}

/** The value starting at `start`: [from, to). `toQuoteEnd`: the rest of the quoted string (headers, `-u 'u:p w'`). */
function valueSpan(s: string, ctx: Ctx, start: number, toQuoteEnd = false): Span {
  if (start >= s.length) return [start, start];
  const q = ctx.q;
  const inQuote = (k: number, z: number): boolean => q[k] === z || q[k] === -2 || (q[k] === -1 && s[k] === "\\");
  if (ctx.open[start] !== 0) {
    // the value is one quoted string: its whole content (a "…" stops before a $ or backtick)
    const z = ctx.open[start];
    const from = z === 3 ? start + 2 : start + 1;
    let k = from;
    while (k < s.length && inQuote(k, z)) k++;
    return [from, k];
  }
  if ((q[start] === 1 || q[start] === 2) && (s[start] === "'" || s[start] === '"')) {
    // a quote inside quoted code (`bash -c "x --password 'a b'"`): up to the same quote
    const z = q[start];
    let k = start + 1;
    while (k < s.length && q[k] === z && s[k] !== s[start]) k++;
    return [start + 1, k];
  }
  if (toQuoteEnd && (q[start] === 1 || q[start] === 2)) {
    const z = q[start];
    let k = start;
    while (k < s.length && s[k] !== "\n" && inQuote(k, z)) k++;
    return [start, k];
  }
  let k = start;
  while (k < s.length && !STOP.has(s[k])) k++;
  return [start, k];
}

interface Rule {
  /** for docs/TRACE.md and test names */
  name: string;
  re: RegExp;
  /** the spans to redact for one match */
  spans: (m: RegExpExecArray, s: string, ctx: Ctx) => Span[];
}

/** A rule whose match ends where the value starts (valueSpan finds its end). */
const valueAfter =
  (toQuoteEnd = false) =>
  (m: RegExpExecArray, s: string, ctx: Ctx): Span[] => {
    const start = m.index + m[0].length;
    return [valueSpan(s, ctx, start, toQuoteEnd)];
  };
/**
 * For a match of a command name: the values after each `opt` (a global regex whose match ends
 * where the value starts) up to the end of that command (`;` `&` `|` newline). Linear: the
 * command's text is scanned once, not looked behind from every position.
 */
const optionsOfCommand =
  (opt: RegExp) =>
  (m: RegExpExecArray, s: string, ctx: Ctx): Span[] => {
    const from = m.index + m[0].length;
    let to = from;
    while (to < s.length && !";&|\n".includes(s[to])) to++;
    const out: Span[] = [];
    const text = s.slice(from, to);
    opt.lastIndex = 0;
    for (let o = opt.exec(text); o !== null; o = opt.exec(text)) {
      if (o[0].length === 0) opt.lastIndex++;
      out.push(valueSpan(s, ctx, from + o.index + o[0].length));
    }
    return out;
  };

/** A rule whose whole match is the secret. */
const whole = (m: RegExpExecArray): Span[] => [[m.index, m.index + m[0].length]];

/** Commands whose `-p<value>` (attached) is a password: mysql and friends. */
const MYSQLISH = "(?:mysql|mysqladmin|mysqldump|mysqlimport|mysqlshow|mysqlcheck|mysqlpump|mysqlslap|mariadb(?:-[a-z]+)?)";

const RULES: Rule[] = [
  // PEM private keys pasted into a command (echo "-----BEGIN …" > key)
  {
    name: "pem-private-key",
    re: /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)/g,
    spans: whole,
  },
  // HTTP headers: Authorization / Proxy-Authorization / X-Api-Key / Cookie … up to the closing quote or EOL
  {
    name: "auth-header",
    re: /\b(?:(?:proxy-)?authorization|x-api-key|x-auth-token|api-key|cookie|set-cookie|private-token)\s*:\s*/gi,
    spans: valueAfter(true),
  },
  // Bearer/Basic/Token credentials anywhere (also outside a header)
  { name: "bearer", re: /\b(?:Bearer|Basic)\s+(?=[A-Za-z0-9._~+/=-]{8,})/gi, spans: valueAfter() },
  // --password=VALUE, --token=VALUE, --api-key=VALUE (also single dash)
  { name: "option-equals", re: new RegExp(`(?<=^|[\\s'"])--?[A-Za-z0-9-]*${SECRET_OPTION}=`, "gi"), spans: valueAfter() },
  // --password VALUE, --token VALUE (next word is the value unless it is another option)
  { name: "option-space", re: new RegExp(`(?<=^|[\\s'"])--?[A-Za-z0-9-]*${SECRET_OPTION}[ \\t]+(?=['"]?[^-\\s'"])`, "gi"), spans: valueAfter() },
  // mysql -pSECRET, mysqldump -uroot -p'SECRET' (attached only: `-p db` asks for the password)
  {
    name: "mysql-p",
    re: new RegExp(`(?:^|[\\s;&|('"/])${MYSQLISH}\\b`, "g"),
    spans: optionsOfCommand(/(?<=[\s'"])-p(?=[^\s])/g),
  },
  // sshpass -p PASS / -pPASS, redis-cli -a PASS
  { name: "sshpass-p", re: /(?:^|[\s;&|('"/])sshpass\b/g, spans: optionsOfCommand(/(?<=\s)-p\s*/g) },
  { name: "redis-cli-a", re: /(?:^|[\s;&|('"/])redis-cli\b/g, spans: optionsOfCommand(/(?<=\s)(?:-a|--pass)\s+/g) },
  // FOO_TOKEN=x, PGPASSWORD=x, AWS_SECRET_ACCESS_KEY=x, MYSQL_PWD=x (env assignments, key=value, key: value)
  {
    name: "assignment",
    re: /\b(?:[A-Za-z_][A-Za-z0-9_.-]*)?(?:TOKEN|SECRET|PASSWORD|PASSWD|_PWD|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIALS?)[A-Za-z0-9_]*(?:=|:[ \t]*)/gi,
    spans: valueAfter(),
  },
  // curl -u user:pass / --user user:pass / -uuser:pass / --proxy-user / -U
  {
    name: "curl-user",
    re: /(?<=^|[\s'"])(?:-u|-U|--user|--proxy-user)(?:[ \t]+|=)?['"]?[^\s:'"]+:/g,
    spans: valueAfter(true),
  },
  // scheme://user:password@host
  {
    name: "url-credentials",
    re: /\b[a-z][a-z0-9+.-]*:\/\/[^\s:/@'"]+:(?=[^\s@/'"]+@)/gi,
    spans: (m, s) => {
      const start = m.index + m[0].length;
      return [[start, s.indexOf("@", start)]];
    },
  },
  // AWS access key ids and well-known token shapes
  { name: "aws-access-key-id", re: /\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b/g, spans: whole },
  { name: "github-token", re: /\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})\b/g, spans: whole },
  { name: "gitlab-token", re: /\bglpat-[A-Za-z0-9_-]{20,}\b/g, spans: whole },
  { name: "slack-token", re: /\bxox[abposr]-[A-Za-z0-9-]{10,}\b/g, spans: whole },
  { name: "sk-key", re: /\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}\b/g, spans: whole },
  { name: "npm-token", re: /\bnpm_[A-Za-z0-9]{36}\b/g, spans: whole },
  { name: "google-api-key", re: /\bAIza[0-9A-Za-z_-]{35}\b/g, spans: whole },
  { name: "jwt", re: /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b/g, spans: whole },
  // the aws cli form `aws configure set aws_secret_access_key VALUE`
  { name: "aws-configure", re: /\b(?:aws_secret_access_key|aws_session_token)[ \t]+/gi, spans: valueAfter() },
];

export const REDACTION_RULES: readonly string[] = RULES.map((r) => r.name);

/** Replace secret-looking values of a command line with `[REDACTED]`, in place. Idempotent. */
export function redactCmd(cmd: string): string {
  // a pass can make another rule match (a replaced `;` inside quotes no longer ends a command):
  // repeat until nothing changes, so that redacting twice gives what redacting once gave
  let out = cmd;
  for (let pass = 0; pass < 4; pass++) {
    const next = redactOnce(out);
    if (next === out) break;
    out = next;
  }
  return out;
}

function redactOnce(cmd: string): string {
  const ctx = contexts(cmd);
  const mark = new Uint8Array(cmd.length);
  let any = false;
  for (const r of RULES) {
    r.re.lastIndex = 0;
    for (let m = r.re.exec(cmd); m !== null; m = r.re.exec(cmd)) {
      if (m[0].length === 0) r.re.lastIndex++;
      for (const [a, b] of r.spans(m, cmd, ctx)) {
        for (let k = a; k < b; k++) {
          if (replaceable(cmd, ctx, k)) {
            mark[k] = 1;
            any = true;
          }
        }
      }
    }
  }
  if (!any) return cmd;
  let out = "";
  for (let k = 0; k < cmd.length; ) {
    if (!mark[k]) {
      out += cmd[k++];
      continue;
    }
    while (k < cmd.length && mark[k]) k++;
    out += REDACTED;
  }
  return out;
}

/** True when redaction changed the command (replay then refuses: the original is gone). */
export const isRedacted = (cmd: string): boolean => cmd.includes(REDACTED);
