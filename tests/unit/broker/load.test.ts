/** Loading: profiles, files (YAML/TOML), variables, validation errors (file + path + expected), commit. */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadEffectivePolicy, loadEffectivePolicySync, PolicyError } from "../../../src/broker/index.ts";
import { tempHome, type TempHome } from "./_helpers.ts";

let t: TempHome;
afterEach(() => t?.cleanup());

function errorOf(f: () => unknown): PolicyError {
  try {
    f();
  } catch (e) {
    if (e instanceof PolicyError) return e;
    throw e;
  }
  throw new Error("expected a PolicyError");
}

describe("effective policy", () => {
  test("no policy file: the built-in default (spec example, observe)", async () => {
    t = tempHome();
    const l = await loadEffectivePolicy(t.home, { home: t.home });
    expect(l.source).toMatchObject({ file: "builtin:default", selection: { policy: "default", via: "first_use" } });
    expect(l.policy.id).toBe("default");
    expect(l.policy.mode).toBe("observe");
    expect(l.commit).toMatch(/^sha256:[0-9a-f]{16}$/);
  });

  test("$HOME and $PROJECT expand in paths", () => {
    t = tempHome();
    const proj = join(t.home, "proj");
    mkdirSync(join(proj, "a", "b"), { recursive: true });
    writeFileSync(join(proj, ".substrate-profile"), "dev\n");
    t.write("dev.yaml", "id: dev\nname: Dev\nfs:\n  write: ['$PROJECT/**', '${HOME}/.cache/**', '~/x']\nprivacy:\n  ignore_paths: ['~/.ssh']\n");
    const l = loadEffectivePolicySync(join(proj, "a", "b"), { home: t.home });
    expect(l.policy.project).toBe(proj);
    expect(l.policy.doc.fs.write).toEqual([`${proj}/**`, `${t.home}/.cache/**`, `${t.home}/x`]);
    expect(l.policy.doc.privacy?.ignore_paths).toEqual([`${t.home}/.ssh`]);
  });

  test("spec acceptance: .substrate-profile in a subdir overrides the parent's", () => {
    t = tempHome();
    const root = join(t.home, "work");
    const sub = join(root, "vendor", "lib");
    mkdirSync(sub, { recursive: true });
    writeFileSync(join(root, ".substrate-profile"), "# team policy\nrelaxed\n");
    writeFileSync(join(root, "vendor", ".substrate-profile"), "strict\n");
    t.write("relaxed.yaml", "id: relaxed\nname: R\n");
    t.write("strict.toml", 'id = "strict"\nname = "S"\nmode = "enforce"\n[commands]\ndenied = ["curl *"]\n');
    const top = loadEffectivePolicySync(root, { home: t.home });
    expect(top.policy.id).toBe("relaxed");
    expect(top.source.profile_file).toBe(join(root, ".substrate-profile"));
    const deep = loadEffectivePolicySync(sub, { home: t.home });
    expect(deep.policy.id).toBe("strict");
    expect(deep.policy.mode).toBe("enforce");
    // obeyed because strict is stricter than the recorded relaxed (a project file may only tighten)
    expect(deep.source).toMatchObject({ file: join(t.policies, "strict.toml"), profile_file: join(root, "vendor", ".substrate-profile"), selection: { via: "tightened" } });
    expect(deep.policy.project).toBe(join(root, "vendor"));
  });

  test("a profile naming a missing policy is a config error with a next step", () => {
    t = tempHome();
    writeFileSync(join(t.home, ".substrate-profile"), "nope\n");
    const e = errorOf(() => loadEffectivePolicySync(t.home, { home: t.home }));
    expect(e.exitCode).toBe(2);
    expect(e.format()).toContain('policy "nope" selected by');
    expect(e.hint).toContain("substrate policy init nope");
  });

  test("a profile with garbage is rejected", () => {
    t = tempHome();
    writeFileSync(join(t.home, ".substrate-profile"), "Not A Name\n");
    expect(errorOf(() => loadEffectivePolicySync(t.home, { home: t.home })).format()).toContain("is not a policy id");
  });

  test("commit: content hash outside git, short git hash (+dirty) inside", () => {
    t = tempHome();
    t.write("default.yaml", "id: default\nname: D\n");
    const plain = loadEffectivePolicySync(t.home, { home: t.home });
    expect(plain.commit).toMatch(/^sha256:[0-9a-f]{16}$/);
    const git = (...a: string[]) => Bun.spawnSync(["git", "-C", t.policies, ...a], { env: { ...process.env, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@t", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@t" } });
    git("init", "-q");
    git("add", "default.yaml");
    git("commit", "-q", "-m", "p");
    const head = git("log", "-1", "--format=%h").stdout.toString().trim();
    expect(loadEffectivePolicySync(t.home, { home: t.home }).commit).toBe(head);
    t.write("default.yaml", "id: default\nname: D2\n");
    expect(loadEffectivePolicySync(t.home, { home: t.home }).commit).toMatch(new RegExp(`^${head}-dirty\\.[0-9a-f]{8}$`));
  });
});

describe("validation at load time (spec): file, field path, expected; exit 2", () => {
  test("every schema error is reported", () => {
    t = tempHome();
    const f = t.write("default.yaml", "id: Default Policy\nmode: strict\ncomands: {}\ncommands:\n  denied: [1]\nworld:\n  limits:\n    memory: 2GB\n    cpu: two\n");
    const e = errorOf(() => loadEffectivePolicySync(t.home, { home: t.home }));
    expect(e.file).toBe(f);
    expect(e.exitCode).toBe(2);
    const byPath = Object.fromEntries(e.issues.map((i) => [i.path, i.message]));
    expect(byPath.id).toContain("^[a-z0-9-]+$");
    expect(byPath.name).toBe("required field missing (expected string)");
    expect(byPath.mode).toContain('expected one of "observe"|"enforce"');
    expect(byPath["commands.denied[0]"]).toBe("expected string, received number");
    expect(byPath["world.limits.memory"]).toContain('"2Gi"');
    expect(byPath["world.limits.cpu"]).toContain("CPU count");
    expect(byPath[""]).toContain('unknown field "comands": expected one of id, name, mode, fs, net, commands');
    expect(e.format().split("\n")[0]).toBe(`substrate: invalid policy ${f}:`);
  });

  test("unknown nested fields name the allowed ones", () => {
    t = tempHome();
    t.write("default.yaml", "id: default\nname: x\ncommands:\n  deny: ['sudo *']\n");
    const e = errorOf(() => loadEffectivePolicySync(t.home, { home: t.home }));
    expect(e.issues).toEqual([{ path: "commands", message: 'unknown field "deny": expected one of allowed, denied, isolated, require_approval, allow_shell_operators' }]);
  });

  test("YAML and TOML syntax errors carry line numbers", () => {
    t = tempHome();
    t.write("default.yaml", "id: default\nname: [unclosed\n");
    expect(errorOf(() => loadEffectivePolicySync(t.home, { home: t.home })).issues[0].message).toMatch(/^YAML syntax error at line \d+/);
    t.cleanup();
    t = tempHome();
    t.write("default.toml", 'id = "default"\nname = [\n');
    expect(errorOf(() => loadEffectivePolicySync(t.home, { home: t.home })).issues[0].message).toMatch(/^TOML syntax error at line \d+/);
  });

  test("pattern errors point at the pattern", () => {
    t = tempHome();
    t.write("default.yaml", "id: default\nname: x\ncommands:\n  denied: ['ok *', 'a && b']\n");
    const e = errorOf(() => loadEffectivePolicySync(t.home, { home: t.home }));
    expect(e.issues[0].path).toBe("commands.denied[1]");
    expect(e.issues[0].message).toContain("(pattern: a && b)");
  });

  test("the id must match the file name", () => {
    t = tempHome();
    t.write("default.yaml", "id: other\nname: x\n");
    expect(errorOf(() => loadEffectivePolicySync(t.home, { home: t.home })).issues).toEqual([
      { path: "id", message: '"other" does not match the file name: expected "default"' },
    ]);
  });

  test("empty sections are allowed (YAML null = not set)", () => {
    t = tempHome();
    t.write("default.yaml", "id: default\nname: x\ncommands:\n  denied:\napproval:\n");
    expect(loadEffectivePolicySync(t.home, { home: t.home }).policy.doc.commands.denied).toEqual([]);
  });
});
