/**
 * A small seeded generator of shell command lines for property tests: words with every kind
 * of quoting, joined by operators, nested in subshells / $(…) / bash -c.
 */
export function rng(seed: number): () => number {
  // mulberry32
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];

const PLAIN = "abcdefghijklmnopqrstuvwxyz0123456789_-./=:,+@%";
const SPECIAL = " \t'\"\\$`;&|()<>*?[]#~!{}\n";

/** A random word value (what the program should receive as argv[i]). */
export function randomWord(r: () => number, special = true): string {
  const n = 1 + Math.floor(r() * 8);
  let w = "";
  for (let i = 0; i < n; i++) w += special && r() < 0.3 ? pick(r, [...SPECIAL]) : pick(r, [...PLAIN]);
  return w;
}

/** Render `w` so that bash reads it back as exactly `w` (one word, no expansion). */
export function quoteWord(r: () => number, w: string): string {
  const styles: ((s: string) => string | null)[] = [
    (s) => (/^[A-Za-z0-9_\-./,+@%:]+$/.test(s) && !s.startsWith("~") ? s : null),
    (s) => `'${s.replace(/'/g, `'\\''`)}'`,
    (s) => `"${s.replace(/(["\\$`])/g, "\\$1")}"`,
    (s) => (s.includes("\n") ? null : s.replace(/[^A-Za-z0-9_]/g, (c) => `\\${c}`)),
    (s) => (s.includes("\n") ? null : `$'${s.replace(/(['\\])/g, "\\$1")}'`),
    // mixed: split in two and quote each half differently
    (s) => (s.length < 2 ? null : `'${s.slice(0, 1).replace(/'/g, `'\\''`)}'"${s.slice(1).replace(/(["\\$`])/g, "\\$1")}"`),
  ];
  for (;;) {
    const q = pick(r, styles)(w);
    if (q !== null) return q;
  }
}

export const OPS = [";", "&&", "||", "|", "&", "\n"] as const;

export interface GenCmd {
  argv: string[];
  text: string;
}

export function randomCommand(r: () => number, special = true): GenCmd {
  const name = pick(r, ["echo", "ls", "cat", "git", "npm", "printf", "true", "grep"]);
  const argv = [name];
  const n = Math.floor(r() * 5);
  for (let i = 0; i < n; i++) argv.push(randomWord(r, special));
  return { argv, text: argv.map((w, i) => (i === 0 ? w : quoteWord(r, w))).join(" ") };
}

/** A line of 1–4 commands joined by random operators. */
export function randomLine(r: () => number, special = true): { cmds: GenCmd[]; text: string } {
  const cmds: GenCmd[] = [];
  let text = "";
  const n = 1 + Math.floor(r() * 4);
  for (let i = 0; i < n; i++) {
    const c = randomCommand(r, special);
    cmds.push(c);
    text += (i === 0 ? "" : ` ${pick(r, OPS)} `) + c.text;
  }
  return { cmds, text };
}

/** Embed `inner` (a command line) somewhere a shell would run it. */
export function embed(r: () => number, inner: string): string {
  const ways: ((s: string) => string)[] = [
    (s) => `${randomCommand(r).text} ${pick(r, [";", "&&", "||", "|", "&", "\n"])} ${s}`,
    (s) => `${s} ${pick(r, [";", "&&", "||", "|"])} ${randomCommand(r).text}`,
    (s) => `echo $( ${s} )`, // `$((` would be arithmetic
    (s) => `echo "x $( ${s} ) y"`,
    (s) => `echo \`${s.replace(/[\\`]/g, (c) => `\\${c}`)}\``,
    (s) => `( ${s} )`,
    (s) => `{ ${s}; }`,
    (s) => `bash -c ${quoteWord(r, s)}`,
    (s) => `sh -ec ${quoteWord(r, s)}`,
    (s) => `env FOO=1 ${s}`,
    (s) => `if true; then ${s}; fi`,
    (s) => `cat <(${s})`,
    (s) => `FOO=bar ${s} 2>/dev/null`,
    (s) => `nohup ${s} &`,
    (s) => `eval ${quoteWord(r, s)}`,
  ];
  let s = inner;
  const depth = 1 + Math.floor(r() * 3);
  for (let i = 0; i < depth; i++) s = pick(r, ways)(s);
  return s;
}
