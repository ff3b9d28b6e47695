/**
 * The broker through the real CLI: `substrate -c` gated by the policy (deny → 126 with the
 * spec's message and a policy_denied span; observe runs and logs), `substrate policy …`.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { policyEnv, substrate, type PolicyEnv } from "./_policy-env.ts";

let e: PolicyEnv;
afterEach(() => e?.cleanup());

describe("substrate -c under a policy", () => {
  test("spec acceptance: `rm -rf /` is denied (126) with policy_id and the pattern; a policy_denied span is written", () => {
    e = policyEnv();
    e.enforceDefault();
    const r = substrate(e, ["-c", "rm -rf /"]);
    expect(r.err).toBe("substrate: denied by policy default: Command explicitly denied (pattern: rm -rf /)\n");
    expect(r.code).toBe(126);
    expect(r.out).toBe(""); // the (fake) rm never ran
    const spans = e.traceLines();
    expect(spans.length).toBe(1);
    expect(spans[0]).toMatchObject({
      event_type: "policy_denied",
      cmd: "rm -rf /",
      reason: "Command explicitly denied",
      pattern: "rm -rf /",
      policy_id: "default",
      component: "shell",
    });
  });

  test("a denied sub-command denies the line, even behind bash -c and $(…)", () => {
    e = policyEnv();
    e.enforceDefault();
    for (const cmd of ["echo hi && sudo id", "bash -c 'echo x; sudo id'", "echo $(sudo id)", "curl -fsSL https://x | sh"]) {
      const r = substrate(e, ["-c", cmd]);
      expect({ cmd, code: r.code, out: r.out }).toEqual({ cmd, code: 126, out: "" });
    }
    expect(substrate(e, ["-c", "echo 'sudo id'"])).toMatchObject({ code: 0, out: "sudo id\n" });
  });

  test("spec acceptance: observe mode logs the violation without blocking", () => {
    e = policyEnv(); // no policy file: the built-in default, mode observe
    const r = substrate(e, ["-c", "sudo id"]);
    expect(r.code).toBe(0);
    expect(r.out).toBe("fake sudo id\n");
    expect(r.err).toBe("");
    expect(e.traceLines()).toEqual([
      expect.objectContaining({ event_type: "policy_violation", cmd: "sudo id", pattern: "sudo *", policy_id: "default" }),
    ]);
  });

  test("an invalid policy refuses to run anything: exit 2, the file and the field", () => {
    e = policyEnv();
    const f = e.writePolicy("default.yaml", "id: default\nname: x\nmode: enforced\n");
    const r = substrate(e, ["-c", "echo should-not-run"]);
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    expect(r.err).toContain(`substrate: invalid policy ${f}:`);
    expect(r.err).toContain('  - mode: Invalid option: expected one of "observe"|"enforce"');
  });

  test("an isolated command in enforce mode without a world is refused, not run on the host", () => {
    e = policyEnv();
    e.enforceDefault();
    const r = substrate(e, ["-c", "npm install left-pad"]);
    expect(r.code).toBe(126);
    expect(r.err).toContain("must run in an isolated world");
  });

  test("approval without a terminal: denied at once with a clear message (never hangs on an open stdin)", () => {
    e = policyEnv();
    e.writePolicy("default.yaml", "id: default\nname: x\nmode: enforce\ncommands:\n  require_approval: ['curl *']\n");
    const r = substrate(e, ["-c", "curl https://example.org"], { stdin: "pipe" });
    expect(r.code).toBe(126);
    expect(r.out).toBe("");
    expect(r.err).toContain("substrate: denied by policy default: Command requires approval, and stdin is not a terminal to ask on (pattern: curl *)");
    expect(r.err).toContain("hint: run it from an interactive terminal");
  });
});

describe("substrate policy", () => {
  test("init writes the spec example (0600) and refuses to overwrite without --force", () => {
    e = policyEnv();
    const r = substrate(e, ["policy", "init"]);
    expect(r.code).toBe(0);
    const f = join(e.policies, "default.yaml");
    expect(readFileSync(f, "utf8")).toContain("mode: observe  # Start in observe mode");
    expect(statSync(f).mode & 0o777).toBe(0o600);
    const again = substrate(e, ["policy", "init"]);
    expect(again.code).toBe(2);
    expect(again.err).toContain("already exists");
    expect(substrate(e, ["policy", "init", "--force"]).code).toBe(0);
    expect(substrate(e, ["policy", "init", "strict"]).code).toBe(0);
    expect(readFileSync(join(e.policies, "strict.yaml"), "utf8")).toMatch(/^id: strict$/m);
  });

  test("validate: ok (0) / every error with file and field path (2)", () => {
    e = policyEnv();
    const good = e.writePolicy("good.yaml", "id: good\nname: G\nexamples:\n  allow: ['ls']\n");
    const ok = substrate(e, ["policy", "validate", good]);
    expect(ok.code).toBe(0);
    expect(ok.out).toContain(`ok: ${good} (policy good, mode observe, 0 rules, 1 self-tests passed)`);
    const bad = e.writePolicy("bad.yaml", "id: bad\nname: B\nworld:\n  limits:\n    memory: lots\ncommands:\n  denied: ['x; y']\n");
    const r = substrate(e, ["policy", "validate", bad]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`substrate: invalid policy ${bad}:`);
    expect(r.err).toContain("  - world.limits.memory: expected a size such as \"512Mi\" or \"2Gi\"");
    const all = substrate(e, ["policy", "validate"]);
    expect(all.code).toBe(2);
    expect(all.out).toContain(`ok: ${good}`);
    expect(all.err).toContain(bad);
    expect(substrate(e, ["policy", "validate", join(e.dir, "missing.yaml")]).code).toBe(2);
    // a draft elsewhere may have any id; inside the policies directory the id must match the name
    writeFileSync(join(e.dir, "draft.yaml"), "id: default\nname: draft\n");
    expect(substrate(e, ["policy", "validate", join(e.dir, "draft.yaml")]).code).toBe(0);
    const misnamed = e.writePolicy("misnamed.yaml", "id: default\nname: x\n");
    expect(substrate(e, ["policy", "validate", misnamed]).err).toContain('id: "default" does not match the file name: expected "misnamed"');
  });

  test("show --json: the effective policy, its source, profile and provenance", () => {
    e = policyEnv();
    const proj = join(e.home, "proj");
    mkdirSync(proj);
    writeFileSync(join(proj, ".substrate-profile"), "team\n");
    const f = e.writePolicy("team.yaml", "id: team\nname: Team\nmode: enforce\ncommands:\n  denied: ['sudo *']\n");
    const r = substrate(e, ["policy", "show", "--json"], { cwd: proj });
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.source).toMatchObject({ file: f, profile_file: join(proj, ".substrate-profile"), selection: { policy: "team", via: "unrecorded" } });
    expect(j.policy.commands.denied).toEqual(["sudo *"]);
    expect(j.project).toBe(proj);
    expect(j.provenance["commands.denied"]).toBe("file");
    expect(j.provenance["world.limits"]).toBe("default");
    expect(j.commit).toMatch(/^sha256:/);
    const text = substrate(e, ["policy", "show"], { cwd: proj });
    expect(text.out).toContain(`# selected by: ${join(proj, ".substrate-profile")}`);
  });

  test("reload: stamps the directory when every policy is valid; refuses (2) otherwise", () => {
    e = policyEnv();
    e.writePolicy("default.yaml", "id: default\nname: D\n");
    const r = substrate(e, ["policy", "reload"]);
    expect(r.code).toBe(0);
    expect(existsSync(join(e.policies, ".reload"))).toBe(true);
    e.writePolicy("broken.yaml", "id: broken\n");
    const b = substrate(e, ["policy", "reload"]);
    expect(b.code).toBe(2);
    expect(b.err).toContain("keep their last good policy");
  });
});
