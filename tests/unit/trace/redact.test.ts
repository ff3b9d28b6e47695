/**
 * Trace redaction (issue 14 item 6): secrets are replaced IN PLACE and the command keeps its
 * shell structure — checked with the broker's own parser (same commands, words, operators,
 * redirections, substitutions) on a table of secret forms and on random lines.
 */
import { describe, expect, test } from "bun:test";
import { REDACTED, redactCmd } from "../../../src/trace/redact.ts";
import { structure } from "./_structure.ts";
import { OPS, pick, quoteWord, randomLine, rng } from "../broker/_gen.ts";

const S = "hunter2Zq"; // a secret value that matches no rule by itself

describe("secret forms are redacted in place", () => {
  test.each([
    [`mysql -uroot -p${S} db`, "mysql -uroot -p[REDACTED] db"],
    [`mysqladmin -u root -p${S} status`, "mysqladmin -u root -p[REDACTED] status"],
    [`/usr/bin/mysqldump -p'${S} x' db > dump.sql`, "/usr/bin/mysqldump -p'[REDACTED]' db > dump.sql"],
    ["mysql -p db", "mysql -p db"], // -p alone prompts: `db` is the database
    [`tool --password=${S} x`, "tool --password=[REDACTED] x"],
    [`tool --password ${S} x`, "tool --password [REDACTED] x"],
    [`tool --password '${S};x' y`, "tool --password '[REDACTED]' y"],
    [`tool --token ${S}; echo sk-abcdefghijklmnopqrstuvwx`, "tool --token [REDACTED]; echo [REDACTED]"],
    [`tool --token=${S}&& ls`, "tool --token=[REDACTED]&& ls"],
    [`curl -u alice:${S} https://x`, "curl -u alice:[REDACTED] https://x"],
    [`curl -ualice:${S} https://x | jq .`, "curl -ualice:[REDACTED] https://x | jq ."],
    [`curl --user 'alice:${S} x' https://x`, "curl --user 'alice:[REDACTED]' https://x"],
    [`curl -H "Authorization: Bearer ${S}.x.y" https://x`, `curl -H "Authorization: [REDACTED]" https://x`],
    [`curl -H 'authorization: token ${S}' https://x`, "curl -H 'authorization: [REDACTED]' https://x"],
    [`curl --header='X-Api-Key: ${S}' u`, "curl --header='X-Api-Key: [REDACTED]' u"],
    [`echo Bearer ${S}abcd`, "echo Bearer [REDACTED]"],
    [`git clone https://alice:${S}@host/r.git`, "git clone https://alice:[REDACTED]@host/r.git"],
    [`psql 'postgresql://u:${S}@db:5432/x' -c 'select 1'`, "psql 'postgresql://u:[REDACTED]@db:5432/x' -c 'select 1'"],
    [`AWS_SECRET_ACCESS_KEY=${S}/abc+d aws s3 ls`, "AWS_SECRET_ACCESS_KEY=[REDACTED] aws s3 ls"],
    [`export AWS_SECRET_ACCESS_KEY="${S} x"; aws s3 ls`, `export AWS_SECRET_ACCESS_KEY="[REDACTED]"; aws s3 ls`],
    [`PGPASSWORD=${S} psql -h x`, "PGPASSWORD=[REDACTED] psql -h x"],
    [`MYSQL_PWD=${S} mysql`, "MYSQL_PWD=[REDACTED] mysql"],
    [`GITHUB_TOKEN=${S} gh pr list`, "GITHUB_TOKEN=[REDACTED] gh pr list"],
    ["echo sk-ant-abcdefghijklmnopqrstuvwxyz0123", "echo [REDACTED]"],
    ["echo ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "echo [REDACTED]"],
    ["echo github_pat_11AAAAAAA0aaaaaaaaaaaaaaaaaaaaa", "echo [REDACTED]"],
    ["echo xoxb-1234567890-abcdefghij", "echo [REDACTED]"],
    ["echo glpat-abcdefghijklmnopqrstu", "echo [REDACTED]"],
    [`sshpass -p ${S} ssh host`, "sshpass -p [REDACTED] ssh host"],
    [`redis-cli -a ${S} ping`, "redis-cli -a [REDACTED] ping"],
    // inside code given to a shell: cut at the inner operator, the inner command keeps its shape
    [`bash -c 'curl --token ${S}; echo hi'`, "bash -c 'curl --token [REDACTED]; echo hi'"],
    [`bash -c "tool --password '${S} x;y'; echo hi"`, `bash -c "tool --password '[REDACTED]'; echo hi"`],
    [`sh -c "mysql -p${S}&&ls"`, `sh -c "mysql -p[REDACTED]&&ls"`],
  ])("%s", (input, expected) => {
    const out = redactCmd(input);
    expect(out).toBe(expected);
    expect(structure(out)).toEqual(structure(input));
    expect(redactCmd(out)).toBe(out); // idempotent
  });

  test.each(["docker login --password-stdin -u me", "npm install", "mysql -p db", "python tokenizer.py --input data.txt", "ls -la /etc/passwd"])(
    "ordinary commands stay as they are: %s",
    (cmd) => expect(redactCmd(cmd)).toBe(cmd),
  );

  test("a substitution inside a quoted secret is kept (only plain text is replaced)", () => {
    const input = `tool --password "a$(cat f)b" x`;
    const out = redactCmd(input);
    expect(out).toContain("$(cat f)");
    expect(structure(out)).toEqual(structure(input));
  });
});

describe("property: random lines with secrets keep their structure and lose their secrets", () => {
  const forms: ((r: () => number, v: string) => string)[] = [
    (_r, v) => `--password=${v}`,
    (r, v) => `--token ${quoteWord(r, v)}`,
    (r, v) => `--api-key ${quoteWord(r, v)}`,
    (_r, v) => `-u alice:${v}`,
    (_r, v) => `https://bob:${v}@example.com/x`,
    (_r, v) => `-H 'Authorization: Bearer ${v}'`,
    (_r, v) => `-H "X-Api-Key: ${v}"`,
  ];
  const SEEDS = Number(process.env.BROKER_PROP_SEEDS ?? 400);
  test("structure, no secret left, idempotent", () => {
    for (let seed = 1; seed <= SEEDS; seed++) {
      const r = rng(seed * 13);
      const secret = `Zk${Math.floor(r() * 1e9).toString(36)}Q9`;
      // a random line with a secret form after one of its commands, and an assignment in front
      const { cmds } = randomLine(r);
      const at = Math.floor(r() * cmds.length);
      const form = pick(r, forms)(r, secret);
      const body = cmds.map((c, i) => (i === at ? `${c.text} ${form}` : c.text)).reduce((acc, t) => `${acc} ${pick(r, OPS)} ${t}`);
      const line = `${pick(r, ["PGPASSWORD", "AWS_SECRET_ACCESS_KEY", "MY_TOKEN"])}=${secret}x ${body}`;
      const out = redactCmd(line);
      if (JSON.stringify(structure(line)) !== JSON.stringify(structure(out))) expect({ seed, line, out, s: structure(out) }).toEqual({ seed, line, out, s: structure(line) });
      expect({ seed, line, leaked: out.includes(secret) }).toEqual({ seed, line, leaked: false });
      expect(out).toContain(REDACTED);
      expect(redactCmd(out)).toBe(out);
    }
  });
});

describe("property: random token soup (quotes, substitutions, comments, here-docs) keeps its structure", () => {
  test("structure and idempotence on 20,000 seeded lines", () => {
    const toks = ["mysql", "-pS3cr", "--password", "=", "hunter2", "--token", "X", ";", "&&", "|", "'", '"', "$(", ")", "`", "\\", "{", "}", "$'", "-H", "Authorization: Bearer abcdefgh123", "https://u:pw@h", "-u", "a:b", "PGPASSWORD=", "AWS_SECRET_ACCESS_KEY=", "sk-abcdefghijklmnopqrstuvwx", "#", "\n", " ", "<", ">", "(", "bash -c", "echo", "<<EOF", "EOF", "ghp_aaaaaaaaaaaaaaaaaaaaaaaa", "token:", "x y", "$X"];
    const r = rng(777);
    for (let i = 0; i < 20_000; i++) {
      const line = Array.from({ length: Math.floor(r() * 12) }, () => pick(r, toks)).join(pick(r, [" ", "", " "]));
      const out = redactCmd(line);
      if (JSON.stringify(structure(out)) !== JSON.stringify(structure(line))) expect({ line, out }).toEqual({ line, out: "(structure changed)" });
      if (redactCmd(out) !== out) expect({ line, out, again: redactCmd(out) }).toEqual({ line, out, again: out });
    }
  });

  test("a header inside a substitution inside double quotes", () => {
    const line = `echo "$(curl -H 'Authorization: Bearer ${S}abc' https://x)" && ls`;
    expect(redactCmd(line)).toBe(`echo "$(curl -H 'Authorization: [REDACTED]' https://x)" && ls`);
    const doc = `cat <<EOF > .env\nPASSWORD=${S}\nEOF\necho done`;
    expect(redactCmd(doc)).toBe("cat <<EOF > .env\nPASSWORD=[REDACTED]\nEOF\necho done");
    expect(structure(redactCmd(doc))).toEqual(structure(doc));
  });
});
