/**
 * Issue 14 item 4: the policy of a project is recorded host-side on first use; nothing in the
 * project (what a world can write) can weaken it afterwards — removing `.substrate-profile`,
 * a weaker `sub/.substrate-profile`, a broken one, a symlink into the project — while a
 * stricter one is obeyed (and recorded), and `substrate policy use` switches explicitly.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadEffectivePolicySync, PolicyError, recordProjectPolicy, selectionFileFor } from "../../../src/broker/load.ts";
import { looserField } from "../../../src/broker/tighten.ts";
import { Policy } from "../../../src/contract/policy.ts";
import { tempHome, type TempHome } from "./_helpers.ts";

let t: TempHome;
afterEach(() => t?.cleanup());

const STRICT = "id: strict\nname: S\nmode: enforce\ncommands:\n  denied: ['curl *']\n";
const WEAK = "id: weak\nname: W\nmode: observe\n";
const STRICTER = "id: stricter\nname: S2\nmode: enforce\ncommands:\n  denied: ['curl *', 'wget *']\n";

function project(): string {
  t = tempHome();
  t.write("strict.yaml", STRICT);
  t.write("weak.yaml", WEAK);
  t.write("stricter.yaml", STRICTER);
  const p = join(t.home, "proj");
  mkdirSync(join(p, ".git"), { recursive: true });
  mkdirSync(join(p, "sub", "deep"), { recursive: true });
  writeFileSync(join(p, ".substrate-profile"), "strict\n");
  return p;
}
const load = (cwd: string) => loadEffectivePolicySync(cwd, { home: t.home });

describe("host-side selection", () => {
  test("first use records the selection; removing the profile changes nothing", () => {
    const p = project();
    const first = load(p);
    expect(first.policy.id).toBe("strict");
    expect(first.source.selection).toMatchObject({ via: "first_use", project: p });
    const rec = JSON.parse(readFileSync(selectionFileFor(p, { home: t.home }), "utf8"));
    expect(rec).toMatchObject({ project: p, policy: "strict", via: "first_use", profile_file: join(p, ".substrate-profile") });
    rmSync(join(p, ".substrate-profile"));
    const after = load(join(p, "sub"));
    expect(after.policy.id).toBe("strict");
    expect(after.source.selection).toMatchObject({ via: "recorded", project: p });
  });

  test("a weaker sub/.substrate-profile (with its own .git) is not obeyed, and says so", () => {
    const p = project();
    load(p);
    writeFileSync(join(p, "sub", ".substrate-profile"), "weak\n");
    mkdirSync(join(p, "sub", ".git"));
    const l = load(join(p, "sub", "deep"));
    expect(l.policy.id).toBe("strict");
    expect(l.source.selection.ignored_profile).toMatchObject({ id: "weak", file: join(p, "sub", ".substrate-profile") });
    expect(l.source.selection.notice).toContain('names policy "weak", which is not at least as strict');
    expect(l.source.selection.notice).toContain("substrate policy use weak");
  });

  test("a profile naming the missing default or a broken profile cannot switch it off either", () => {
    const p = project();
    load(p);
    writeFileSync(join(p, ".substrate-profile"), "default\n"); // the observe-mode built-in
    expect(load(p).policy.id).toBe("strict");
    writeFileSync(join(p, ".substrate-profile"), "NOT A POLICY ID\n");
    const l = load(p);
    expect(l.policy.id).toBe("strict");
    expect(l.source.selection.notice).toContain("is not valid and is ignored");
  });

  test("a stricter profile is obeyed and recorded: removing or weakening it later changes nothing", () => {
    const p = project();
    load(p);
    writeFileSync(join(p, "sub", ".substrate-profile"), "stricter\n");
    const l = load(join(p, "sub"));
    expect(l.policy.id).toBe("stricter");
    expect(l.source.selection).toMatchObject({ via: "tightened", project: join(p, "sub") });
    writeFileSync(join(p, "sub", ".substrate-profile"), "strict\n"); // back to the parent's: looser than recorded
    expect(load(join(p, "sub")).policy.id).toBe("stricter");
    rmSync(join(p, "sub", ".substrate-profile"));
    expect(load(join(p, "sub", "deep")).policy.id).toBe("stricter");
    expect(load(p).policy.id).toBe("strict"); // the parent keeps its own
  });

  test("a symlink into the project from elsewhere still finds the project's record", () => {
    const p = project();
    load(p);
    const outside = join(t.home, "elsewhere");
    mkdirSync(outside);
    writeFileSync(join(outside, ".substrate-profile"), "weak\n");
    symlinkSync(outside, join(p, "sub", "link")); // made inside the project, points out of it
    expect(load(join(p, "sub", "link")).policy.id).toBe("strict");
    symlinkSync(join(p, "sub"), join(t.home, "in")); // and a link from outside into the project
    writeFileSync(join(p, "sub", ".substrate-profile"), "weak\n");
    expect(load(join(t.home, "in")).policy.id).toBe("strict");
  });

  test("`policy use` switches explicitly (also to a weaker one); a corrupt record fails closed", () => {
    const p = project();
    load(p);
    rmSync(join(p, ".substrate-profile")); // (while it names strict, strict would tighten it again)
    const r = recordProjectPolicy(join(p, "sub"), "weak", { home: t.home });
    expect(r).toMatchObject({ project: p, previous: "strict" });
    expect(load(p).policy.id).toBe("weak");
    expect(() => recordProjectPolicy(p, "nope", { home: t.home })).toThrow(PolicyError);
    writeFileSync(selectionFileFor(p, { home: t.home }), "{ not json");
    expect(() => load(p)).toThrow(PolicyError);
  });

  test("show-style loads (record: false) never write a record", () => {
    const p = project();
    const l = loadEffectivePolicySync(p, { home: t.home, record: false });
    expect(l.source.selection.via).toBe("unrecorded");
    expect(() => readFileSync(selectionFileFor(p, { home: t.home }))).toThrow();
  });
});

describe("looserField: is P at least as strict as R", () => {
  const P = (o: Record<string, unknown>) => Policy.parse({ id: "x", name: "x", ...o });
  test.each([
    [{ mode: "enforce" }, { mode: "observe" }, null],
    [{ mode: "observe" }, { mode: "enforce" }, "mode"],
    [{ commands: { denied: ["a", "b"] } }, { commands: { denied: ["a"] } }, null],
    [{ commands: { denied: ["b"] } }, { commands: { denied: ["a"] } }, "commands.denied"],
    [{ commands: { allowed: ["ls *"] } }, {}, null],
    [{}, { commands: { allowed: ["ls *"] } }, "commands.allowed"],
    [{ commands: { allowed: ["ls *", "rm *"] } }, { commands: { allowed: ["ls *"] } }, "commands.allowed"],
    [{ approval: { auto_approve: [] } }, { approval: { auto_approve: ["git *"] } }, null],
    [{ approval: { auto_approve: ["make"] } }, {}, "approval.auto_approve"],
    [{ net: { allowed: ["a.com"] } }, { net: { allowed: ["a.com", "b.com"] } }, null],
    [{ net: { allowed: ["c.com"] } }, { net: { allowed: ["a.com"] } }, "net.allowed"],
    [{ world: { isolate_network: false } }, {}, "world.isolate_network"],
    [{ world: { allow_ptrace: true } }, {}, "world.allow_ptrace"],
    [{ world: { limits: { memory: "1Gi" } } }, { world: { limits: { memory: "2Gi" } } }, null],
    [{ world: { limits: { memory: "4Gi" } } }, { world: { limits: { memory: "2Gi" } } }, "world.limits.memory"],
    [{ fs: { write: [] } }, { fs: { write: ["/p/**"] } }, "fs.write"],
    [{ name: "other", privacy: { ignore_paths: [] } }, {}, null],
  ])("%j vs %j", (p, r, expected) => {
    expect(looserField(P(p), P(r))).toBe(expected);
  });
});

describe("shared roots", () => {
  test("a record for the home directory holds there only, not for the projects below it", () => {
    t = tempHome();
    t.write("strict.yaml", STRICT);
    t.write("weak.yaml", WEAK);
    writeFileSync(join(t.home, ".substrate-profile"), "strict\n");
    expect(load(t.home).policy.id).toBe("strict"); // records the home directory
    const p = join(t.home, "other");
    mkdirSync(join(p, ".git"), { recursive: true });
    writeFileSync(join(p, ".substrate-profile"), "weak\n");
    const l = load(p);
    expect(l.policy.id).toBe("weak"); // its own first use, not the home's record
    expect(l.source.selection).toMatchObject({ via: "first_use", project: p });
    rmSync(join(t.home, ".substrate-profile"));
    expect(load(t.home).policy.id).toBe("strict"); // the home's own record still holds there
  });
});
