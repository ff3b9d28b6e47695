/** evaluate(): rule order, allowlist, operators, isolation, approval, self-tests, world spec. */
import { describe, expect, test } from "bun:test";
import { evaluate, quickCheck, worldSpecFromPolicy } from "../../../src/broker/index.ts";
import { compileText, PolicyError } from "../../../src/broker/load.ts";
import { DEFAULT_POLICY_YAML } from "../../../src/broker/default-policy.ts";
import { enforce, policyOf } from "./_helpers.ts";

const CWD = "/proj/sub";

describe("spec acceptance: broker in the hot path", () => {
  const def = compileText(DEFAULT_POLICY_YAML, "builtin:default", { home: "/home/u", project: "/proj" });
  test("`rm -rf /` is denied with the policy's pattern", () => {
    expect(evaluate("rm -rf /", CWD, def)).toEqual({
      kind: "deny",
      reason: "Command explicitly denied",
      pattern: "rm -rf /",
      rule: "commands.denied",
      sub_command: "rm -rf /",
    });
  });
  test("`curl https://random.com` is denied with a reason under an allowlist policy", () => {
    const p = enforce({ allowed: ["curl https://github.com/*", "git *"] });
    const d = evaluate("curl https://random.com", CWD, p);
    expect(d).toMatchObject({ kind: "deny", rule: "commands.allowed", pattern: null });
    expect(d.kind === "deny" && d.reason).toBe("Command not explicitly allowed: curl https://random.com");
    expect(evaluate("curl https://github.com/x/y", CWD, p).kind).toBe("allow");
  });
  test("the default policy isolates package installs and allows the rest", () => {
    expect(evaluate("npm install left-pad", CWD, def)).toEqual({
      kind: "allow_with_restrictions",
      restrictions: ["IsolatedWorld", "OverlayFS", "NetworkFilter"],
      pattern: "npm install *",
    });
    expect(evaluate("cd x && pip install -r req.txt", CWD, def).kind).toBe("allow_with_restrictions");
    expect(evaluate("ls -la", CWD, def)).toEqual({ kind: "allow" });
  });
});

describe("order: denied, operators, allowlist, isolated, approval", () => {
  test("denied beats allowed and isolated", () => {
    const p = enforce({ denied: ["npm install evil"], allowed: ["npm *"], isolated: ["npm install *"] });
    expect(evaluate("npm install evil", CWD, p).kind).toBe("deny");
    expect(evaluate("npm install good", CWD, p).kind).toBe("allow_with_restrictions");
    expect(evaluate("npm test", CWD, p).kind).toBe("allow");
  });
  test("not allowed beats isolated", () => {
    const p = enforce({ allowed: ["git *"], isolated: ["pip install *"] });
    expect(evaluate("pip install x", CWD, p)).toMatchObject({ kind: "deny", rule: "commands.allowed" });
  });
  test("isolated skips approval (spec order)", () => {
    const p = enforce({ isolated: ["pip install *"], require_approval: ["pip *"] });
    expect(evaluate("pip install x", CWD, p).kind).toBe("allow_with_restrictions");
    expect(evaluate("pip uninstall x", CWD, p).kind).toBe("approval_required");
  });
  test("allow_shell_operators: false", () => {
    const p = enforce({ allow_shell_operators: false });
    for (const c of ["a; b", "a && b", "a | b", "a > f", "echo $(x)", "(a)", "a &"])
      expect(evaluate(c, CWD, p)).toMatchObject({ kind: "deny", rule: "commands.allow_shell_operators" });
    expect(evaluate("ls -la 'a;b'", CWD, p).kind).toBe("allow");
  });
  test("absurd nesting is refused rather than guessed", () => {
    let s = "true";
    for (let i = 0; i < 60; i++) s = `echo $(${s})`;
    expect(evaluate(s, CWD, enforce({}))).toMatchObject({ kind: "deny", pattern: null });
  });
});

describe("approval", () => {
  test("require_approval patterns, auto_approve, and the key", () => {
    const p = policyOf(
      "id: t\nname: t\nmode: enforce\ncommands:\n  require_approval: ['npm *', 'make *']\napproval:\n  auto_approve: ['npm test', 'make']\n",
    );
    expect(evaluate("npm test", CWD, p).kind).toBe("allow");
    expect(evaluate("make", CWD, p).kind).toBe("allow");
    expect(evaluate("npm test && npm publish", CWD, p)).toEqual({
      kind: "approval_required",
      reason: "Command requires approval",
      pattern: "npm *",
      key: { policy_id: "t", cwd_prefix: CWD, command_pattern: "npm test && npm publish" },
    });
  });
  test("approval.require_approval: every command not auto-approved", () => {
    const p = policyOf("id: t\nname: t\napproval:\n  require_approval: true\n  auto_approve: ['git *']\n");
    expect(evaluate("git status", CWD, p).kind).toBe("allow");
    expect(evaluate("ls", CWD, p)).toMatchObject({ kind: "approval_required", pattern: null });
  });
});

describe("quick_check (shims)", () => {
  const p = enforce({ denied: ["curl * | sh", "git push --force *"], allowed: ["ls"] });
  test("deny list only: the allowlist is not consulted", () => {
    expect(quickCheck(["git", "status"], CWD, p).kind).toBe("allow");
    expect(quickCheck(["git", "push", "--force", "origin"], CWD, p)).toMatchObject({ kind: "deny", pattern: "git push --force *" });
  });
  test("argv words are taken literally (no re-splitting, no operators)", () => {
    expect(quickCheck(["git", "push --force origin"], CWD, p).kind).toBe("allow");
    expect(quickCheck(["echo", "a; git push --force x"], CWD, p).kind).toBe("allow");
  });
});

describe("policy self-tests (examples)", () => {
  test("passing examples load", () => {
    const p = policyOf(
      "id: t\nname: t\ncommands:\n  denied: ['sudo *']\n  isolated: ['pip install *']\nexamples:\n  deny: ['sudo ls', 'bash -c \"sudo x\"']\n  allow: ['ls']\n  isolate: ['pip install x']\n",
    );
    expect(p.id).toBe("t");
  });
  test("a failing example rejects the policy with a clear message", () => {
    try {
      policyOf("id: t\nname: t\ncommands:\n  denied: ['sudo *']\nexamples:\n  deny: ['doas ls']\n  allow: ['sudo ls']\n");
      throw new Error("should have failed");
    } catch (e) {
      expect(e).toBeInstanceOf(PolicyError);
      expect((e as PolicyError).issues).toEqual([
        { path: "examples.deny[0]", message: "self-test failed: `doas ls` should be deny but is allow" },
        { path: "examples.allow[0]", message: "self-test failed: `sudo ls` should be allow but is deny (pattern: sudo *)" },
      ]);
    }
  });
});

describe("worldSpecFromPolicy", () => {
  test("limits, network and domains come from the policy", () => {
    const p = compileText(DEFAULT_POLICY_YAML, "builtin:default", { home: "/home/u", project: "/proj" });
    expect(worldSpecFromPolicy(p, "/proj")).toEqual({
      project_dir: "/proj",
      reuse_session: true,
      isolate_network: true,
      enable_preload: false,
      allow_ptrace: false, // issue 14.1
      root_inside: false, // issue 13 (rootless)
      egress: { policy_id: "default", total_bytes: 1073741824, bytes_per_sec: 10485760 }, // issue 15
      allowed_domains: ["github.com", "registry.npmjs.org", "pypi.org", "crates.io", "pkg.go.dev"],
      limits: { cpu: "2", memory: "2Gi" },
      // issue 13 (FSVIEW): the fs section, `$HOME` handed back as `~` for the agent to expand
      fs_view: {
        read: ["/**"],
        write: ["$PROJECT/**", "/tmp/**", "$HOME/.cache/**", "$HOME/.npm/**", "$HOME/.cargo/**"], // as written: the agent expands them for the world (caller home, world project)
        deny_read: [...p.doc.fs.deny_read, ...p.doc.fs.deny_read.map((d) => d.replace(/^~/, "/home/u"))],
        read_only: [],
      },
    });
    expect(worldSpecFromPolicy(p.doc, "/x").project_dir).toBe("/x");
  });
});

describe("properties of evaluate()", () => {
  test("never throws, always returns a contract-valid Decision (random lines and garbage)", async () => {
    const { Decision } = await import("../../../src/contract/policy.ts");
    const { rng, pick, randomLine, embed } = await import("./_gen.ts");
    const p = policyOf(
      "id: t\nname: t\nmode: enforce\ncommands:\n  denied: ['rm -rf /', 'curl * | sh']\n  allowed: ['echo *', 'ls *', 'git *', 'bash *', 'rm *', 'curl *', 'sh']\n  isolated: ['npm *']\n  require_approval: ['git push *']\napproval:\n  auto_approve: ['git push origin *']\n",
    );
    const alphabet = [..."ab $()`'\"\\;&|<>{}#\n~=*?[]!"];
    for (let seed = 1; seed <= 500; seed++) {
      const r = rng(seed);
      const lines = [
        randomLine(r).text,
        embed(r, "rm -rf /"),
        Array.from({ length: Math.floor(r() * 30) }, () => pick(r, alphabet)).join(""),
      ];
      for (const line of lines) {
        const d = evaluate(line, CWD, p);
        expect(Decision.parse(d)).toEqual(d);
      }
      expect(evaluate(lines[1], CWD, p).kind).toBe("deny");
    }
  });
});
