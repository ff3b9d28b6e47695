/**
 * Issue 14 item 5: with `curl *` denied in enforce mode, each of these forms ran curl on the
 * previous main (the parser did not expand braces or command-word globs, did not look through
 * `flock -c`, `env -S`, `script -c`, `runuser -u`, and let shells read code from stdin) — all
 * but `setsid -w curl`, which was already denied and stays here as a family check. Each runs here for
 * real through the CLI (`substrate -c`, on the host: SUBSTRATE_WORLD=disabled), against a fake
 * `curl` that leaves a marker file on the host. Judged by the marker: enforce → it never
 * appears (exit 126); the same form under an observe-mode policy → it appears, which proves
 * the form really runs curl (so on the previous main, which allowed it, enforce ran it too).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostArgv } from "../helpers/agent.ts";

const dir = mkdtempSync(join(tmpdir(), "substrate-broker-sec-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const bin = join(dir, "bin");
const marks = join(dir, "marks");
mkdirSync(bin, { recursive: true });
mkdirSync(marks, { recursive: true });
writeFileSync(join(bin, "curl"), `#!/bin/sh\nfor a in "$@"; do : > "${marks}/$a"; done\n`);
chmodSync(join(bin, "curl"), 0o755);

function homeWith(mode: "enforce" | "observe"): string {
  const home = join(dir, `home-${mode}`);
  mkdirSync(join(home, ".substrate", "policies"), { recursive: true });
  writeFileSync(join(home, ".substrate", "policies", "default.yaml"), `id: default\nname: deny curl\nmode: ${mode}\ncommands:\n  denied: ["curl *"]\n`);
  return home;
}
const homes = { enforce: homeWith("enforce"), observe: homeWith("observe") };

function run(mode: "enforce" | "observe", cmd: string): { code: number | null; err: string } {
  const home = homes[mode];
  const p = Bun.spawnSync([...hostArgv(), "-c", cmd], {
    cwd: home,
    env: { PATH: `${bin}:/usr/bin:/bin:/usr/sbin:/sbin`, HOME: home, SUBSTRATE_WORLD: "disabled", SUBSTRATE_TRACE: join(dir, "trace.jsonl"), LANG: "C.UTF-8" },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: 60_000,
  });
  return { code: p.exitCode, err: p.stderr.toString() };
}

// each form runs `curl TAG`; the fake curl creates marks/TAG
const FORMS: [string, (tag: string) => string][] = [
  ["brace expansion", (t) => `{curl,${t}}`],
  ["brace expansion inside the name", (t) => `c{u,}rl ${t}`],
  ["bracket glob in the command word", (t) => `${bin}/c[u]rl ${t}`],
  ["? glob in the command word", (t) => `${bin}/cur? ${t}`],
  ["* glob in the command word", (t) => `${bin}/cu*l ${t}`],
  ["flock FILE -c", (t) => `flock ${dir}/lock -c 'curl ${t}'`],
  ["env -S", (t) => `env -S 'curl ${t}'`],
  ["env --split-string=", (t) => `env --split-string='curl ${t}'`],
  ["bash <<< here-string", (t) => `bash <<< 'curl ${t}'`],
  ["printf … | bash", (t) => `printf 'curl ${t}' | bash`],
  ["printf … | sh -s", (t) => `printf 'curl ${t}' | sh -s`],
  [". /dev/stdin <<< …", (t) => `. /dev/stdin <<< 'curl ${t}'`],
  ["source /dev/stdin from a pipe", (t) => `echo 'curl ${t}' | source /dev/stdin`],
  ["bash here-document", (t) => `bash <<'EOF'\ncurl ${t}\nEOF\n`],
  ["bash <(…)", (t) => `bash <(printf 'curl ${t}')`],
  ["script -qc", (t) => `script -qc 'curl ${t}' /dev/null`],
  ["runuser -u USER", (t) => `runuser -u root -- curl ${t}`],
  ["setsid -w", (t) => `setsid -w curl ${t}`],
  ["command name from a variable", (t) => `C=curl; $C ${t}`],
  ["bash -c with code built at run time", (t) => `X='curl ${t}'; bash -c "$X"`],
];

describe("each form is denied in enforce mode and curl never runs", () => {
  FORMS.forEach(([name, form], i) => {
    test(name, () => {
      const tagE = `e${i}`;
      const tagO = `o${i}`;
      const e = run("enforce", form(tagE));
      expect({ name, code: e.code }).toEqual({ name, code: 126 });
      expect(e.err).toContain("substrate: denied by policy default:");
      expect({ name, ran: existsSync(join(marks, tagE)) }).toEqual({ name, ran: false });
      // the control: the same form does run curl (observe mode lets it through)
      const o = run("observe", form(tagO));
      expect({ name, ran: existsSync(join(marks, tagO)), err: o.err }).toEqual({ name, ran: true, err: o.err });
    });
  });

  test("ordinary commands still run in enforce mode", () => {
    const r = run("enforce", `echo {a,b} > ${dir}/out; bash -c 'echo hi' >> ${dir}/out; bash <<< 'echo there' >> ${dir}/out`);
    expect(r).toEqual({ code: 0, err: "" });
    expect(readFileSync(join(dir, "out"), "utf8")).toBe("a b\nhi\nthere\n");
  });
});
