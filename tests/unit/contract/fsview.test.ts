/** Issue 13 (FSVIEW): the world spec's fs view, the policy's fs section, and the mapping between them. */
import { describe, expect, test } from "bun:test";
import { DEFAULT_DENY_READ, FsView, Policy, WorldSpec } from "../../../src/contract/index.ts";
import { worldSpecFromPolicy } from "../../../src/broker/world-spec.ts";
import { expandGlob, expandPattern, planFsView, protectedFingerprint, splitDirGlob } from "../../../agent/world/fsview.ts";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { roundTrip } from "../../helpers/contract.ts";

describe("FsView contract", () => {
  test("round trip; defaults hide the secrets and add nothing writable", () => {
    const v = roundTrip(FsView, { write: ["~/.cache/**"], read_only: ["$PROJECT/Makefile"] });
    expect(v.deny_read).toEqual([...DEFAULT_DENY_READ]);
    expect(v.read).toEqual([]);
    expect(FsView.parse({}).write).toEqual([]);
    expect(FsView.safeParse({ writes: [] }).success).toBe(false); // strict: a typo is an error
    expect(DEFAULT_DENY_READ).toContain("~/.ssh");
    expect(DEFAULT_DENY_READ).toContain("~/.docker/config.json");
  });

  test("WorldSpec.fs_view is optional (older clients) and round-trips", () => {
    expect(WorldSpec.parse({ project_dir: "/p" }).fs_view).toBeUndefined();
    const s = roundTrip(WorldSpec, { project_dir: "/p", fs_view: { write: ["$HOME/.npm/**"], deny_read: [] } });
    expect(s.fs_view?.deny_read).toEqual([]);
  });

  test("policy fs.deny_read defaults to the secrets list, `[]` shows everything", () => {
    const p = Policy.parse({ id: "x", name: "x" });
    expect(p.fs.deny_read).toEqual([...DEFAULT_DENY_READ]);
    expect(Policy.parse({ id: "x", name: "x", fs: { deny_read: [] } }).fs.deny_read).toEqual([]);
  });

  test("policy → WorldSpec: the fs section becomes fs_view with $HOME left to the agent", () => {
    const doc = Policy.parse({ id: "x", name: "x", fs: { read: ["/**"], write: ["$HOME/.cache/**", "/opt/x/**"], deny_read: ["~/.ssh"] } });
    const s = worldSpecFromPolicy(doc, "/p");
    expect(s.fs_view).toEqual({ read: ["/**"], write: ["$HOME/.cache/**", "/opt/x/**"], deny_read: ["~/.ssh"], read_only: [] });
    // A compiled policy has $HOME expanded with the host's home: turned back into `~`.
    const compiled = { doc: { ...doc, fs: { ...doc.fs, write: ["/home/me/.cache/**", "/opt/x/**"] } }, home: "/home/me" } as never;
    expect(worldSpecFromPolicy(compiled, "/p").fs_view?.write).toEqual(["~/.cache/**", "/opt/x/**"]);
    // Secrets are hidden under the caller's home AND under this process's home (Lima: the Mac's
    // home is visible in the guest at its own path).
    expect(worldSpecFromPolicy(compiled, "/p").fs_view?.deny_read).toEqual(["~/.ssh", "/home/me/.ssh"]);
  });
});

describe("fs view planning (agent side)", () => {
  const caller = { uid: 1000, gid: 1000, groups: [1000], name: "me", home: "/home/me", shell: "/bin/bash" };

  test("expansion: ~, $HOME, ${HOME}, $PROJECT; normalised; no home → dropped", () => {
    expect(expandPattern("~/.cache/**", "/home/me", "/p")).toBe("/home/me/.cache/**");
    expect(expandPattern("${HOME}/a/../b", "/home/me", "/p")).toBe("/home/me/b");
    expect(expandPattern("$PROJECT/x", "/home/me", "/p")).toBe("/p/x");
    expect(expandPattern("~/x", undefined, "/p")).toBeNull();
    expect(expandPattern("relative/x", "/home/me", "/p")).toBeNull();
    expect(expandPattern("$HOMEX/x", "/home/me", "/p")).toBeNull();
  });

  test("glob semantics: dir/** is the dir, wildcards in the middle expand against the fs", () => {
    expect(splitDirGlob("/a/b/**")).toEqual({ path: "/a/b", dir: true });
    expect(splitDirGlob("/**")).toEqual({ path: "/", dir: true });
    expect(splitDirGlob("/a/file")).toEqual({ path: "/a/file", dir: false });
    const fs: Record<string, string[]> = { "/": ["srv"], "/srv": ["a", "b", ".hid", "c.txt"] };
    expect(expandGlob("/srv/*/cache", (d) => fs[d] ?? [])).toEqual(["/srv/a/cache", "/srv/b/cache", "/srv/c.txt/cache"]);
    expect(expandGlob("/srv/[ab]", (d) => fs[d] ?? [])).toEqual(["/srv/a", "/srv/b"]);
    expect(expandGlob("/srv/.*", (d) => fs[d] ?? [])).toEqual(["/srv/.hid"]);
    expect(expandGlob("/no/glob")).toEqual(["/no/glob"]);
  });

  test("the default policy's fs section: caches writable, $PROJECT and /tmp left to their own mounts", () => {
    const plan = planFsView({
      view: FsView.parse({ read: ["/**"], write: ["$PROJECT/**", "/tmp/**", "$HOME/.cache/**", "$HOME/.npm/**", "$HOME/.cargo/**"] }),
      caller,
      project: "/home/me/proj",
    });
    expect(plan.home).toBe("/home/me");
    expect(plan.fullRead).toBe(true);
    expect(plan.write).toEqual([
      { path: "/home/me/.cache", dir: true },
      { path: "/home/me/.npm", dir: true },
      { path: "/home/me/.cargo", dir: true },
    ]);
    expect(plan.deny).toContain("/home/me/.ssh");
    expect(plan.readOnly).toContain("/home/me/proj/.git/hooks");
    expect(plan.readOnly).toContain("/home/me/.bashrc");
  });

  test("a home under /tmp is the caller's home, not scratch; no caller → no home entries", () => {
    const plan = planFsView({ view: FsView.parse({ write: ["~/.cache/**", "/tmp/x/**"] }), caller: { ...caller, home: "/tmp/u/me" }, project: "/tmp/u/me/p" });
    expect(plan.write).toEqual([{ path: "/tmp/u/me/.cache", dir: true }]);
    const none = planFsView({ view: FsView.parse({ write: ["~/.cache/**"] }), project: "/p" });
    expect(none.home).toBeUndefined();
    expect(none.write).toEqual([]);
    expect(none.notes.length).toBeGreaterThan(0);
  });

  test("policy read_only adds to the built-in list, never replaces it", () => {
    const plan = planFsView({ view: FsView.parse({ read_only: ["$PROJECT/Makefile"] }), caller, project: "/p" });
    expect(plan.readOnly).toContain("/p/Makefile");
    expect(plan.readOnly).toContain("/p/.git/config");
    expect(plan.readOnly).toContain("/p/.envrc");
  });
});

test("the world key's fingerprint changes when a protected path appears (not for an empty placeholder dir)", () => {
  const d = mkdtempSync(join(tmpdir(), "substrate-fp-"));
  try {
    const a = protectedFingerprint(d);
    mkdirSync(join(d, ".claude"));
    expect(protectedFingerprint(d)).toBe(a); // what a world's own placeholder leaves
    writeFileSync(join(d, ".envrc"), "x");
    const b = protectedFingerprint(d);
    expect(b).not.toBe(a);
    writeFileSync(join(d, ".claude/settings.json"), "{}");
    expect(protectedFingerprint(d)).not.toBe(b);
    expect(protectedFingerprint(d, FsView.parse({ read_only: ["$PROJECT/Makefile"] }))).not.toBe(protectedFingerprint(d));
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});
