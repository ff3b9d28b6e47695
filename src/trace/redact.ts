/**
 * Secrets redaction for command lines written to trace.jsonl.
 *
 * Env values are never written at all (only `env_hash`); this module covers the other leak:
 * secrets typed on the command line. The rules are deliberately greedy — a false positive
 * costs a less precise trace (and a replay that refuses to run, see replay.ts), a false
 * negative leaks a credential into a file that is kept for weeks.
 */
export const REDACTED = "[REDACTED]";

/** Option names whose value is a secret: `--password=x`, `--password x`, `--api-key x` … */
const SECRET_OPTION =
  "(?:pass(?:word|wd|phrase)?|token|secret|api[-_]?key|access[-_]?key|secret[-_]?key|private[-_]?key|auth(?:[-_]?token)?|client[-_]?secret|credentials?|bearer)";

interface Rule {
  /** for docs/TRACE.md and test names */
  name: string;
  re: RegExp;
  replace: string | ((...m: string[]) => string);
}

const RULES: Rule[] = [
  // PEM private keys pasted into a command (echo "-----BEGIN …" > key)
  {
    name: "pem-private-key",
    re: /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)/g,
    replace: REDACTED,
  },
  // HTTP headers: Authorization / Proxy-Authorization / X-Api-Key / Cookie … up to the closing quote or EOL
  {
    name: "auth-header",
    re: /\b((?:proxy-)?authorization|x-api-key|x-auth-token|api-key|cookie|set-cookie|private-token)(\s*:\s*)([^"'\n]*)/gi,
    replace: (_m, h, sep) => `${h}${sep}${REDACTED}`,
  },
  // Bearer/Basic/Token credentials anywhere (also outside a header)
  { name: "bearer", re: /\b(Bearer|Basic)(\s+)[A-Za-z0-9._~+/=-]{8,}/gi, replace: (_m, k, s) => `${k}${s}${REDACTED}` },
  // --password=VALUE, --token=VALUE, --api-key=VALUE (also single dash)
  {
    name: "option-equals",
    re: new RegExp(`(^|\\s)(--?[A-Za-z0-9-]*${SECRET_OPTION})=("[^"]*"|'[^']*'|\\S+)`, "gi"),
    replace: (_m, pre, opt) => `${pre}${opt}=${REDACTED}`,
  },
  // --password VALUE, --token VALUE (next word is the value unless it is another option)
  {
    name: "option-space",
    re: new RegExp(`(^|\\s)(--?[A-Za-z0-9-]*${SECRET_OPTION})(\\s+)(?!-)("[^"]*"|'[^']*'|\\S+)`, "gi"),
    replace: (_m, pre, opt, sp) => `${pre}${opt}${sp}${REDACTED}`,
  },
  // FOO_TOKEN=x, PASSWORD=x, AWS_SECRET_ACCESS_KEY=x (env assignments and config-ish key=value)
  {
    name: "assignment",
    re: /\b((?:[A-Za-z_][A-Za-z0-9_.-]*)?(?:TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIALS?)[A-Za-z0-9_]*)(\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s;&|]+)/gi,
    replace: (_m, k, sep) => `${k}${sep}${REDACTED}`,
  },
  // curl -u user:pass / --user user:pass
  {
    name: "curl-user",
    re: /(^|\s)(-u|--user)(\s+|=)("?)([^\s:"']+):([^\s"']+)\4/g,
    replace: (_m, pre, opt, sp, q, user) => `${pre}${opt}${sp}${q}${user}:${REDACTED}${q}`,
  },
  // scheme://user:password@host
  { name: "url-credentials", re: /\b([a-z][a-z0-9+.-]*:\/\/[^\s:/@]+):([^\s@/]+)@/gi, replace: (_m, p) => `${p}:${REDACTED}@` },
  // AWS access key ids and well-known token shapes
  { name: "aws-access-key-id", re: /\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b/g, replace: REDACTED },
  { name: "github-token", re: /\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})\b/g, replace: REDACTED },
  { name: "slack-token", re: /\bxox[abposr]-[A-Za-z0-9-]{10,}\b/g, replace: REDACTED },
  { name: "sk-key", re: /\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}\b/g, replace: REDACTED },
  { name: "google-api-key", re: /\bAIza[0-9A-Za-z_-]{35}\b/g, replace: REDACTED },
  { name: "jwt", re: /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b/g, replace: REDACTED },
  // a bare 40-char base64 blob right after an aws secret hint was handled by `assignment`;
  // here: the aws cli form `aws configure set aws_secret_access_key VALUE`
  { name: "aws-configure", re: /(aws_secret_access_key|aws_session_token)(\s+)(\S+)/gi, replace: (_m, k, s) => `${k}${s}${REDACTED}` },
];

export const REDACTION_RULES: readonly string[] = RULES.map((r) => r.name);

/** Replace secret-looking parts of a command line with `[REDACTED]`. Idempotent. */
export function redactCmd(cmd: string): string {
  let out = cmd;
  for (const r of RULES) {
    r.re.lastIndex = 0;
    out = out.replace(r.re, r.replace as (substring: string, ...args: string[]) => string);
  }
  return out;
}

/** True when redaction changed the command (replay then refuses: the original is gone). */
export const isRedacted = (cmd: string): boolean => cmd.includes(REDACTED);
