/**
 * Issue 14 item 5: forms the broker used to miss. What bash expands before it runs a command
 * (brace expansion, globs in the command word), wrappers that run a command or shell code
 * (`flock -c`, `env -S`, `script -c`, `su -c`, …), and shells fed their code on stdin.
 * Table tests, then property tests with bash as the oracle.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { braceExpand, parseLine } from "../../../src/broker/_lexer.ts";
import { analyze, compilePattern, RuleSet } from "../../../src/broker/pattern.ts";
import { enforce } from "./_helpers.ts";
import { evaluate } from "../../../src/broker/evaluate.ts";
import { pick, quoteWord, rng } from "./_gen.ts";

const VARS = { HOME: "/home/u", PWD: "/w" };
const PVARS = { HOME: "/home/u", PROJECT: "/proj" };
const rules = (...pats: string[]): RuleSet => new RuleSet(pats.map((p) => compilePattern(p, PVARS).pattern!));
const hit = (rs: RuleSet, cmd: string): string | null => rs.firstMatch(analyze(cmd, VARS))?.pattern.source ?? null;
const unknown = (cmd: string): string | null => analyze(cmd, VARS).units.find((u) => u.unknown !== null)?.unknown ?? null;

describe("each form of the review denies `curl *` (enforce)", () => {
  const p = enforce({ denied: ["curl *"] });
  test.each([
    "{curl,--version}",
    "/usr/bin/c[u]rl --version",
    "/usr/bin/cur? --version",
    "flock /tmp/l -c 'curl --version'",
    "env -S 'curl --version'",
    "bash <<< 'curl --version'",
    "printf 'curl --version' | bash",
    ". /dev/stdin <<< 'curl --version'",
    "source /dev/stdin",
    "script -qc 'curl --version' /dev/null",
    // families
    "c{u,}rl --version",
    "{/usr/bin/curl,x}",
    "/usr/bin/c*l x",
    "/usr/*/c[[:alpha:]]rl x",
    "./cu[!x]l x",
    "flock -n /tmp/l -c 'curl x'",
    "flock /tmp/l curl x",
    "env -S'curl x'",
    "env --split-string='FOO=1 curl x'",
    "env -iS 'curl x'",
    "script -c 'curl x' /dev/null",
    "script --command='curl x' /dev/null",
    "printf 'curl x' | script -q /dev/null",
    "su -c 'curl x'",
    "su - root -c 'curl x'",
    "su -lc 'curl x'",
    "runuser -u nobody -- curl x",
    "runuser nobody -c 'curl x'",
    "setsid -f curl x",
    "nohup curl x &",
    "timeout --preserve-status 5 curl x",
    "nice -n 5 curl x",
    "ionice -c2 -n7 curl x",
    "stdbuf -oL curl x",
    "chroot / curl x",
    "busybox sh -c 'curl x'",
    "toybox sh -c 'curl x'",
    "sh -c -- 'curl x'",
    "bash -xec 'curl x'",
    "bash --norc -c 'curl x'",
    "bash -o pipefail -c 'curl x'",
    "/bin/dash -c 'curl x'",
    "bash5.2 -c 'curl x'",
    "fish --command 'curl x'",
    "sg users 'curl x'",
    "watch -n 1 curl x",
    "taskset -c 0 curl x",
    "chrt -f 1 curl x",
    "prlimit --nofile=64 curl x",
    "unshare -r curl x",
    "nsenter -t 1 -m curl x",
    "ip netns exec ns0 curl x",
    "systemd-run --user curl x",
    "xargs -I{} {} x",
    "echo x | xargs sh -c",
    "find /usr/bin -name curl -exec {} --version \\;",
    "bash <<'EOF'\ncurl x\nEOF\n",
    "sh <<EOF\ncurl x\nEOF\n",
    "bash -s <<< 'curl x'",
    "cat s | bash -s -- arg",
    "curl_cmd=x; printf '%s' \"$curl_cmd\" | sh",
    "bash /dev/stdin <<< 'curl x'",
    "bash < /dev/stdin",
    "bash <(printf 'curl x')",
    "bash < <(printf 'curl x')",
    "source <(printf 'curl x')",
    ". /proc/self/fd/0",
    "bash -c \"$CMD\"",
    "eval \"$(printf 'curl x')\"",
    "eval $X",
    "$X --version",
    "$(echo curl) --version",
    "\"$@\"",
    "sh -c '\"$0\" \"$@\"' curl x",
    "alias c='curl x'",
    "trap 'curl x' EXIT",
    "exec bash",
    "sudo -s",
    "echo {1..100000}",
  ])("%j", (cmd) => {
    const d = evaluate(cmd, "/proj", p);
    expect({ cmd, kind: d.kind }).toEqual({ cmd, kind: "deny" });
  });

  test.each([
    "curl_version_check",
    "echo curl",
    "echo {curl,x}",
    "bash script.sh",
    "bash -n script.sh",
    "bash < script.sh",
    "bash --version",
    "bash -c 'echo hi'",
    "bash <<< 'echo hi'",
    "source ./env.sh",
    "env -S 'echo x'",
    "flock /tmp/l -c 'make'",
    "/usr/bin/l? -la",
    "./node_modules/.bin/ts? --noEmit",
    "echo $(date) {a,b}",
    "git log --format='%H {x,y}'",
    "xargs -I{} echo {}",
    "trap - INT",
    "echo $X",
    "rm -rf $(echo x)",
  ])("%j is allowed", (cmd) => {
    expect({ cmd, kind: evaluate(cmd, "/proj", p).kind }).toEqual({ cmd, kind: "allow" });
  });

  test("the deny message says why unknown code is denied", () => {
    const d = evaluate("printf 'curl x' | bash", "/proj", p);
    expect(d).toMatchObject({ kind: "deny", pattern: null, rule: "commands.denied" });
    if (d.kind === "deny") expect(d.reason).toBe("Command runs code the policy cannot check: bash reads its commands from stdin (a pipe, the terminal or a device), so it could run a denied command");
  });

  test("with an empty deny list unknown code runs (nothing to protect), and is never isolated", () => {
    const q = enforce({ isolated: ["npm install *"] });
    expect(evaluate("printf 'curl x' | bash", "/proj", q).kind).toBe("allow");
    expect(evaluate('"$EDITOR" file', "/proj", q).kind).toBe("allow");
  });

  test("an allowlist never covers unknown code or a globbed command word; a pipeline pattern naming it does", () => {
    const q = enforce({ allowed: ["bash *", "printf *", "ls *", "curl * | sh", "curl *"] });
    expect(evaluate("bash -c 'ls'", "/proj", q).kind).toBe("allow");
    expect(evaluate("printf 'ls' | bash", "/proj", q)).toMatchObject({ kind: "deny", rule: "commands.allowed" });
    expect(evaluate("/bin/l? x", "/proj", q)).toMatchObject({ kind: "deny", rule: "commands.allowed" });
    expect(evaluate("curl x | sh", "/proj", q).kind).toBe("allow");
  });
});

describe("brace expansion", () => {
  const words = (w: string): string[] => analyze(`printf %s ${w}`, VARS).units[0].words.slice(2);
  test.each([
    ["{a,b}", ["a", "b"]],
    ["x{a,b}y", ["xay", "xby"]],
    ["{a,{b,c}}d", ["ad", "bd", "cd"]],
    ["{a,b}{1,2}", ["a1", "a2", "b1", "b2"]],
    ["{1..3}", ["1", "2", "3"]],
    ["{3..1}", ["3", "2", "1"]],
    ["{01..03}", ["01", "02", "03"]],
    ["{1..7..3}", ["1", "4", "7"]],
    ["{a..c}", ["a", "b", "c"]],
    ["{a}", ["{a}"]],
    ["{}", ["{}"]],
    ["'{a,b}'", ["{a,b}"]],
    ["\\{a,b}", ["{a,b}"]],
    ["{a\\,b}", ["{a,b}"]],
    ["${x,y}", ["${x,y}"]],
    ["{,a}", ["a"]],
    ["{a{b,c}", ["{ab", "{ac"]],
    ["{1..a}", ["{1..a}"]],
  ])("%s", (w, expected) => expect(words(w)).toEqual(expected));

  test("patterns are not brace-expanded; too large an expansion is flagged", () => {
    expect(compilePattern("echo {a,b}", PVARS).pattern!.elements[0].length).toBe(2);
    expect(parseLine("echo {1..20000}", { vars: {}, strict: false }).out.tooBig).toBe(true);
    expect(braceExpand({ text: "{1..5}{1..5}", q: new Array(12).fill(0) })!.length).toBe(25);
  });
});

describe("deny patterns see through the new wrappers", () => {
  const rs = rules("rm -rf /");
  test.each(["flock f -c 'rm -rf /'", "env -S 'rm -rf /'", "script -qc 'rm -rf /'", "su -c 'rm -rf /'", "runuser -u x rm -rf /", "sg g 'rm -rf /'", "watch rm -rf /", "rm -rf {/,}", "{rm,-rf} /"])("%j", (cmd) =>
    expect(hit(rs, cmd)).toBe("rm -rf /"),
  );
  test("a glob command word matches every denied name it could expand to", () => {
    expect(hit(rules("curl *"), "/opt/c?rl x")).toBe("curl *");
    expect(hit(rules("/usr/bin/curl *"), "/usr/b?n/curl x")).toBe("/usr/bin/curl *");
    expect(hit(rules("curl *"), "/opt/w?et x")).toBeNull();
    expect(hit(rules("curl * | sh"), "cur? x | s?")).toBe("curl * | sh");
  });
  test("unknown-code reasons", () => {
    expect(unknown("printf x | bash")).toContain("reads its commands from stdin");
    expect(unknown("bash -c \"$X\"")).not.toBeNull();
    expect(unknown("bash <<< 'ls'")).toBeNull();
    expect(unknown("bash script.sh")).toBeNull();
    expect(unknown("bash <(curl x)")).toContain("process substitution");
  });
});

// ---------------------------------------------------------------------------------------------
// bash as the oracle

describe("properties (bash is the oracle)", () => {
  test("brace expansion: our words equal bash's argv", () => {
    const r = rng(0xb7ace);
    const pieces = ["a", "b", "x", "1", "2", "{", "}", ",", "..", "-", "'q,r'", '"s}"', "\\{", "\\,", "{a,b}", "{1..3}", "{x,{y,z}}", "{c..e}", "{,k}", "{m,}", "_"];
    const cases: string[] = [];
    for (let i = 0; i < 300; i++) cases.push(Array.from({ length: 1 + Math.floor(r() * 6) }, () => pick(r, pieces)).join(""));
    const script = cases.map((w) => `printf '%s\\0' ${w}; printf '\\036'`).join("\n");
    const out = Bun.spawnSync(["bash", "--norc", "--noprofile", "-c", script], { env: { PATH: "/usr/bin:/bin" } });
    const records = out.stdout.toString("utf8").split("\x1e").slice(0, -1);
    expect(records.length).toBe(cases.length);
    cases.forEach((w, i) => {
      const bash = records[i].split("\0").slice(0, -1);
      const ours = analyze(`printf '%s\\0' ${w}`, VARS).units[0]?.words.slice(2) ?? [];
      expect({ w, ours }).toEqual({ w, ours: bash });
    });
  });

  test("a globbed command word that bash resolves to a denied name is denied", () => {
    const dir = mkdtempSync(join(tmpdir(), "substrate-glob-oracle-"));
    try {
      const names = ["curl", "cat", "cut", "crul", "xcurl", "curly", "wget", "ls", "c.rl"];
      for (const n of names) writeFileSync(join(dir, n), "");
      const r = rng(0x910b);
      const glob = (name: string): string => {
        let g = "";
        for (const ch of name) {
          const k = r();
          if (k < 0.2) g += "?";
          else if (k < 0.3) g += "*";
          else if (k < 0.4) g += `[${ch}${pick(r, ["x", "a", "-z"])}]`;
          else if (k < 0.45) g += "[[:alpha:].]";
          else if (k < 0.5) g += `[!${pick(r, ["q", "w", "."])}]`;
          else if (k < 0.6) g += quoteWord(r, ch).replace(/^\$'(.)'$/, "'$1'");
          else g += ch;
        }
        return g;
      };
      const cases: string[] = [];
      for (let i = 0; i < 300; i++) cases.push(glob(pick(r, names)));
      // bash expands the word as it would for a command: the first resulting word is what runs
      const script = `cd ${dir}\n${cases.map((w) => `printf '%s\\0' ${w}; printf '\\036'`).join("\n")}`;
      const out = Bun.spawnSync(["bash", "--norc", "--noprofile", "-c", script], { env: { PATH: "/usr/bin:/bin" } });
      const records = out.stdout.toString("utf8").split("\x1e").slice(0, -1);
      expect(records.length).toBe(cases.length);
      const deny = rules("curl *");
      let resolvedToCurl = 0;
      cases.forEach((w, i) => {
        const first = records[i].split("\0")[0];
        for (const path of [w, `${dir}/${w}`]) {
          const denied = hit(deny, `${path} --version`) !== null;
          if (first === "curl") expect({ w: path, denied }).toEqual({ w: path, denied: true });
        }
        if (first === "curl") resolvedToCurl++;
        // and a glob bash's own matching says cannot be `curl` is not denied
        const canBeCurl = Bun.spawnSync(["bash", "--norc", "-c", `case curl in ${w}) echo y;; esac`]).stdout.toString() === "y\n";
        if (!canBeCurl) expect({ w, denied: hit(deny, `${w} x`) }).toEqual({ w, denied: null });
      });
      expect(resolvedToCurl).toBeGreaterThan(10);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("property: commands bash runs through stdin shells and wrappers are found (bash is the oracle)", () => {
  test("every command bash runs is one we found, or the line holds unknown code", { timeout: 60_000 }, () => {
    const dir = mkdtempSync(join(tmpdir(), "substrate-oracle-stdin-"));
    try {
      const names = ["echo", "ls", "cat", "git", "npm", "printf", "true", "grep"];
      // recording functions, exported so that child bash processes (here-strings, env -S,
      // flock -c with SHELL=bash, setsid, timeout, nice) record too
      const prelude = [
        `export D=${dir}; C=0`,
        `rec() { C=$((C+1)); command printf '%s\\037' "$@" > "$D/$BASHPID.$RANDOM.$C"; }`,
        ...names.map((n) => `${n}() { rec ${n} "$@"; }`),
        `export -f rec ${names.join(" ")}`,
        `flush() { wait; for f in "$D"/*; do [ -e "$f" ] || continue; command cat "$f"; command printf '\\036'; command rm -f "$f"; done; command printf '\\035'; }`,
      ].join("\n");
      const simple = (r: () => number): string => {
        const name = pick(r, names);
        const args = Array.from({ length: Math.floor(r() * 3) }, () => pick(r, ["a", "b1", "x-y", "'q r'", "{m,n}", "{1..2}"]));
        return [name, ...args].join(" ");
      };
      const ways: ((r: () => number, x: string) => string)[] = [
        (r, x) => `bash <<< ${quoteWord(r, x)}`,
        (_r, x) => `bash <<'EOF'\n${x}\nEOF\n`,
        (r, x) => `env -S ${quoteWord(r, `bash -c ${quoteWord(r, x)}`)}`,
        (r, x) => `flock ${dir}/.lock -c ${quoteWord(r, x)}`,
        (r, x) => `setsid -w bash -c ${quoteWord(r, x)}`,
        (r, x) => `timeout 20 bash -c ${quoteWord(r, x)}`,
        (r, x) => `nice -n 1 bash -c ${quoteWord(r, x)}`,
        (r, x) => `bash -c ${quoteWord(r, x)}`,
        (r, x) => `printf '%s\\n' ${quoteWord(r, x)} | bash`,
      ];
      const r = rng(Number(process.env.BROKER_ORACLE_SEED ?? 5150));
      const lines: string[] = [];
      for (let i = 0; i < 100; i++) {
        let x = Array.from({ length: 1 + Math.floor(r() * 2) }, () => simple(r)).join(` ${pick(r, [";", "&&", "|"])} `);
        if (r() < 0.3) x = `{${pick(r, names)},${pick(r, ["a", "b"])}} ${pick(r, ["c", "d"])}`;
        for (let d = 0; d < 1 + Math.floor(r() * 2); d++) x = pick(r, ways)(r, x);
        lines.push(x);
      }
      const out = Bun.spawnSync(["bash", "--norc", "--noprofile", "-c", `${prelude}\n${lines.map((l) => `${l}\nflush`).join("\n")}`], {
        stdin: "ignore",
        env: { PATH: "/usr/bin:/bin", SHELL: "/bin/bash", HOME: "/home/u" },
        timeout: 60_000,
      });
      const perLine = out.stdout.toString("utf8").split("\x1d").slice(0, -1);
      expect(perLine.length).toBe(lines.length);
      let checked = 0;
      lines.forEach((text, i) => {
        const ran = perLine[i].split("\x1e").slice(0, -1).map((rec) => rec.split("\x1f").slice(0, -1));
        const a = analyze(text, VARS);
        if (a.units.some((u) => u.unknown !== null)) return; // unknown code: denied with any deny list
        const ours = a.units.flatMap((u) => [u.words, ...u.forms]).map((w) => JSON.stringify(w));
        for (const argv of ran) {
          checked++;
          expect({ text, argv, found: ours.includes(JSON.stringify(argv)) }).toEqual({ text, argv, found: true });
        }
      });
      expect(checked).toBeGreaterThan(50);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("robustness", () => {
  test("odd bracket classes in a command word never throw (assumed to match any name)", () => {
    const p = enforce({ denied: ["curl *"] });
    expect(evaluate("[z-a]url x", "/proj", p).kind).toBe("deny");
    expect(evaluate(";--split-string=[[:alpha:]\\;`\n\\;g-I{}alias/dev/stdin]", "/proj", p).kind).toBeDefined();
  });
  test("a long word with unquoted braces counts as unknown; quoted braces (JSON) never do", () => {
    const p = enforce({ denied: ["curl *"] });
    expect(evaluate(`echo ${"{".repeat(3000)}a,b${"}".repeat(3000)}`, "/proj", p).kind).toBe("deny");
    const json = JSON.stringify({ a: "x".repeat(6000), b: [1, 2] });
    expect(evaluate(`printf %s '${json}'`, "/proj", p).kind).toBe("allow");
  });
});
