/** The approval cache: scopes, cwd prefixes, policy binding, reset on profile switch, 0600. */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ApprovalStore } from "../../../src/broker/approvals.ts";
import { tempHome, type TempHome } from "./_helpers.ts";

let t: TempHome;
afterEach(() => t?.cleanup());
const key = (cwd = "/p", cmd = "npm publish") => ({ policy_id: "dev", cwd_prefix: cwd, command_pattern: cmd });

describe("ApprovalStore", () => {
  test("always persists in approvals.json with mode 0600 and holds below the cwd", () => {
    t = tempHome();
    const file = join(t.home, ".substrate", "approvals.json");
    const s = new ApprovalStore(file);
    expect(s.lookup(key(), "h1", null)).toBeNull();
    s.record(key(), "h1", "always", null);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const fresh = new ApprovalStore(file); // another process
    expect(fresh.lookup(key(), "h1", null)).toBe("always");
    expect(fresh.lookup(key("/p/sub/dir"), "h1", "any-session")).toBe("always");
    expect(fresh.lookup(key("/px"), "h1", null)).toBeNull(); // a prefix of the string, not of the path
    expect(fresh.lookup(key("/p", "npm publish --force"), "h1", null)).toBeNull();
    expect(fresh.lookup(key(), "h2", null)).toBeNull(); // policy edited: no longer counts
  });

  test("session approvals: per session id on disk, else per process", () => {
    t = tempHome();
    const file = join(t.home, ".substrate", "approvals.json");
    const a = new ApprovalStore(file);
    a.record(key(), "h", "session", "s1");
    expect(new ApprovalStore(file).lookup(key(), "h", "s1")).toBe("session");
    expect(new ApprovalStore(file).lookup(key(), "h", "s2")).toBeNull();
    a.record(key("/q"), "h", "session", null);
    expect(a.lookup(key("/q"), "h", null)).toBe("session");
    expect(new ApprovalStore(file).lookup(key("/q"), "h", null)).toBeNull();
  });

  test("spec acceptance: the cache resets on profile (policy) switch", () => {
    t = tempHome();
    const file = join(t.home, ".substrate", "approvals.json");
    const s = new ApprovalStore(file);
    s.noteSession("s1", "dev", "h");
    s.record(key(), "h", "session", "s1");
    expect(s.noteSession("s1", "dev", "h")).toBe(false);
    expect(s.lookup(key(), "h", "s1")).toBe("session");
    expect(s.noteSession("s1", "strict", "x")).toBe(true); // cd into a project with another profile
    s.noteSession("s1", "dev", "h"); // and back
    expect(s.lookup(key(), "h", "s1")).toBeNull();
    // same for a session without id (one process)
    s.noteSession(null, "dev", "h");
    s.record(key(), "h", "session", null);
    expect(s.noteSession(null, "strict", "x")).toBe(true);
    expect(s.lookup(key(), "h", null)).toBeNull();
  });

  test("a session with nothing to reset writes nothing (one per `substrate -c`: the file must not grow); its first approval still resets on a switch", () => {
    t = tempHome();
    const file = join(t.home, ".substrate", "approvals.json");
    const s = new ApprovalStore(file);
    for (let i = 0; i < 5; i++) expect(s.noteSession(`s${i}`, "dev", "h")).toBe(false);
    expect(existsSync(file)).toBe(false);
    // no noteSession marker before the approval: the record carries it
    s.record(key(), "h", "session", "s9");
    expect(s.noteSession("s9", "dev", "h")).toBe(false);
    expect(s.lookup(key(), "h", "s9")).toBe("session");
    expect(s.noteSession("s9", "strict", "x")).toBe(true);
    expect(s.lookup(key(), "h", "s9")).toBeNull();
    // markers of sessions without approvals are dropped at the next write
    s.record(key("/r"), "h", "session", "s10");
    expect(Object.keys(JSON.parse(readFileSync(file, "utf8")).sessions)).toEqual(["s10"]);
  });

  test("a file full of old session markers (one per -c ever run) is rewritten without them on read", () => {
    t = tempHome();
    const file = join(t.home, "approvals.json");
    const sessions = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`old${i}`, { policy_id: "dev", policy_hash: "h" }]));
    writeFileSync(file, JSON.stringify({ version: 1, entries: [{ ...key(), policy_hash: "h", scope: "session", session_id: "old7", created_at: new Date().toISOString() }], sessions }));
    const s = new ApprovalStore(file);
    expect(s.lookup(key(), "h", "old7")).toBe("session");
    expect(Object.keys(JSON.parse(readFileSync(file, "utf8")).sessions)).toEqual(["old7"]);
    expect(new ApprovalStore(file).lookup(key(), "h", "old7")).toBe("session");
  });

  test("an edited policy drops its old 'always' entries", () => {
    t = tempHome();
    const file = join(t.home, ".substrate", "approvals.json");
    const s = new ApprovalStore(file);
    s.record(key(), "h1", "always", null);
    s.noteSession("s", "dev", "h2");
    expect(s.entries()).toEqual([]);
  });

  test("a corrupt file is ignored with one warning, then rewritten", () => {
    t = tempHome();
    const file = join(t.home, "approvals.json");
    writeFileSync(file, "{not json");
    const warnings: string[] = [];
    const s = new ApprovalStore(file, (m) => warnings.push(m));
    expect(s.lookup(key(), "h", null)).toBeNull();
    expect(s.lookup(key(), "h", null)).toBeNull();
    expect(warnings.length).toBe(1);
    s.record(key(), "h", "always", null);
    expect(new ApprovalStore(file).lookup(key(), "h", null)).toBe("always");
  });
});
