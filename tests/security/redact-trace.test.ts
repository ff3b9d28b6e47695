/**
 * Issue 14 item 6 (redaction): a command holding secrets runs through the real CLI exactly as
 * typed, and the trace file on the host holds none of the secrets while its recorded `cmd`
 * still has the command's structure (on the previous main `--token X; echo …` lost its `;`
 * and `mysql -pSECRET` was written as typed).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostArgv } from "../helpers/agent.ts";
import { structure } from "../unit/trace/_structure.ts";

const dir = mkdtempSync(join(tmpdir(), "substrate-redact-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const home = join(dir, "home");
const bin = join(dir, "bin");
mkdirSync(home, { recursive: true });
mkdirSync(bin, { recursive: true });
// fake mysql/curl: record their argv on the host, so the test sees what really ran
for (const name of ["mysql", "curl"]) {
  writeFileSync(join(bin, name), `#!/bin/sh\nprintf '%s\\n' "${name} $*" >> "${dir}/ran"\n`);
  chmodSync(join(bin, name), 0o755);
}

function run(cmd: string): { code: number | null; spans: { cmd?: string }[] } {
  const trace = join(dir, `trace-${Math.random().toString(36).slice(2)}.jsonl`);
  const p = Bun.spawnSync([...hostArgv(), "-c", cmd], {
    cwd: home,
    env: { PATH: `${bin}:/usr/bin:/bin`, HOME: home, SUBSTRATE_TRACE: trace, SUBSTRATE_WORLD: "disabled", LANG: "C.UTF-8" },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: 60_000,
  });
  const text = readFileSync(trace, "utf8");
  return { code: p.exitCode, spans: text.split("\n").filter(Boolean).map((l) => JSON.parse(l)) };
}

describe("trace redaction keeps the command's structure and drops its secrets", () => {
  const secrets = ["Pw0rdMysqlX", "TokValueQz", "sk-abcdefghijklmnopqrstuvwxyz012345", "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "CurlPassW9"];
  const cmd = [
    `mysql -uroot -p${secrets[0]} appdb`,
    `curl --token ${secrets[1]}; echo ${secrets[2]}`,
    `GITHUB_TOKEN=${secrets[3]} curl -u alice:${secrets[4]} -H 'Authorization: Bearer ${secrets[1]}' https://127.0.0.1:9/x`,
  ].join(" && ");

  test("the command ran as typed; the host's trace file has no secret and the same structure", () => {
    const r = run(cmd);
    expect(r.code).toBe(0);
    const ran = readFileSync(join(dir, "ran"), "utf8");
    expect(ran).toContain(`-p${secrets[0]}`); // redaction never touches what runs
    const recorded = r.spans.map((s) => s.cmd).filter((c): c is string => typeof c === "string");
    expect(recorded.length).toBeGreaterThan(0);
    const raw = JSON.stringify(r.spans);
    for (const s of secrets) expect({ secret: s, leaked: raw.includes(s) }).toEqual({ secret: s, leaked: false });
    for (const c of recorded) {
      expect(c).toContain("[REDACTED]");
      expect(structure(c)).toEqual(structure(cmd));
      expect(c).toContain("; echo "); // the `;` that redaction used to swallow
    }
  });
});
