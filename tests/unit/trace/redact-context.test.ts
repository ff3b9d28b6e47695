import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ReplayContext } from "../../../src/contract/index.ts";
import {
  buildReplayContext,
  currentUmask,
  envHash,
  isRedacted,
  policyCommit,
  redactCmd,
  worldImageVersion,
} from "../../../src/trace/index.ts";

describe("redactCmd", () => {
  test.each([
    ["mysql --password=hunter2 db", "mysql --password=[REDACTED] db"],
    ["tool --password hunter2 --verbose", "tool --password [REDACTED] --verbose"],
    ["gh auth login --token ghx_abc123", "gh auth login --token [REDACTED]"],
    ["cli --api-key=abc --x", "cli --api-key=[REDACTED] --x"],
    ["cli --client-secret 'a b c'", "cli --client-secret '[REDACTED]'"], // quotes kept: redaction never changes the structure
    [`curl -H "Authorization: Bearer abc.def.ghi" https://x`, `curl -H "Authorization: [REDACTED]" https://x`],
    ["curl -H 'X-Api-Key: 1234567890' u", "curl -H 'X-Api-Key: [REDACTED]' u"],
    ["echo Bearer abcdefgh12345", "echo Bearer [REDACTED]"],
    ["GITHUB_TOKEN=ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa gh pr list", "GITHUB_TOKEN=[REDACTED] gh pr list"],
    ["PASSWORD=x ./run", "PASSWORD=[REDACTED] ./run"],
    ["aws configure set aws_secret_access_key wJalrXUtnFEMI/K7MDENG", "aws configure set aws_secret_access_key [REDACTED]"],
    ["echo AKIAIOSFODNN7EXAMPLE", "echo [REDACTED]"],
    ["curl -u alice:pw123 https://x", "curl -u alice:[REDACTED] https://x"],
    ["git clone https://alice:pw123@host/r.git", "git clone https://alice:[REDACTED]@host/r.git"],
    ["export OPENAI=sk-proj-abcdefghijklmnopqrstuvwxyz", "export OPENAI=[REDACTED]"],
  ])("%s", (input, expected) => {
    expect(redactCmd(input)).toBe(expected);
    expect(isRedacted(redactCmd(input))).toBe(true);
    expect(redactCmd(redactCmd(input))).toBe(expected); // idempotent
  });

  test.each([
    "npm install",
    "git commit --author 'A <a@b>' -m 'token handling'",
    "SHIM_BYPASS=1 npm test",
    "python tokenizer.py --input data.txt",
    "cargo build --release",
    "ls -la /etc/passwd",
  ])("leaves ordinary commands alone: %s", (cmd) => {
    expect(redactCmd(cmd)).toBe(cmd);
  });
});

describe("replay context", () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

  test("envHash: stable, order-independent, ignores volatile vars, sensitive to values", () => {
    const a = envHash({ A: "1", B: "2", PWD: "/x", SHLVL: "3" });
    expect(a).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(envHash({ B: "2", A: "1" })).toBe(a);
    expect(envHash({ A: "1", B: "3" })).not.toBe(a);
  });

  test("buildReplayContext captures PATH, locale, umask, never env values", () => {
    const env = { PATH: "/usr/bin", LANG: "C.UTF-8", SECRET: "zzz-top" };
    const rc = buildReplayContext({ cwd: "/p", env, policyId: "default", policyCommit: "abc1234", worldImageVersion: "0.1.0+h" });
    expect(ReplayContext.parse(rc)).toEqual(rc);
    expect(rc).toMatchObject({ path: "/usr/bin", locale: "C.UTF-8", cwd: "/p", policy_commit: "abc1234" });
    expect(rc.umask).toBe(currentUmask());
    expect(JSON.stringify(rc)).not.toContain("zzz-top");
    expect(buildReplayContext({ cwd: "/p", env: { LANG: "x", LC_ALL: "C" } }).locale).toBe("C");
  });

  test("umask is read without being changed", () => {
    const before = process.umask();
    currentUmask();
    expect(process.umask()).toBe(before);
  });

  test("policyCommit: content hash outside git, git hash inside, dirty edits noticed", () => {
    const d = fs.mkdtempSync(join(tmpdir(), "substrate-pc-"));
    dirs.push(d);
    const f = join(d, "default.yaml");
    fs.writeFileSync(f, "id: default\n");
    const plain = policyCommit(f)!;
    expect(plain).toMatch(/^sha256:[0-9a-f]{16}$/);
    fs.writeFileSync(f, "id: default\nmode: enforce\n");
    expect(policyCommit(f)).not.toBe(plain);
    expect(policyCommit(join(d, "missing.yaml"))).toBeNull();

    const git = (...a: string[]) => {
      const p = Bun.spawnSync(["git", "-C", d, "-c", "user.name=t", "-c", "user.email=t@t", ...a]);
      if (p.exitCode !== 0) throw new Error(p.stderr.toString());
      return p.stdout.toString().trim();
    };
    git("init", "-q");
    git("add", "default.yaml");
    git("commit", "-q", "-m", "p");
    const head = git("rev-parse", "--short", "HEAD");
    expect(policyCommit(f)).toBe(head);
    fs.appendFileSync(f, "# edit\n");
    expect(policyCommit(f)).toMatch(new RegExp(`^${head}-dirty\\.[0-9a-f]{8}$`));
  });

  test("worldImageVersion", () => {
    expect(worldImageVersion({ version: "0.1.0", commit: "abc1234", agent_hash: "3f2a" })).toBe("0.1.0+abc1234.3f2a");
  });
});
