/** decideForCli in-process: modes, events, approval flow with a scripted stdin, diff preview. */
import { afterEach, describe, expect, test } from "bun:test";
import { PassThrough } from "node:stream";
import { decideForCli, summarizeDiff } from "../../../src/broker/index.ts";
import { PolicyEvent } from "../../../src/contract/policy.ts";
import { tempHome, type TempHome } from "./_helpers.ts";

let t: TempHome;
afterEach(() => t?.cleanup());

function io(answer?: string) {
  const stdin = new PassThrough();
  let err = "";
  const stderr = { write: (s: string) => ((err += s), true) };
  if (answer !== undefined) {
    // answer once the prompt has been written, like a user would
    const orig = stderr.write;
    stderr.write = (s: string) => {
      orig(s);
      if (s.startsWith("Choice [")) setTimeout(() => stdin.write(`${answer}\n`), 1);
      return true;
    };
  }
  return { stdin, stderr, err: () => err };
}

describe("decideForCli", () => {
  test("enforce deny: action, 126, message and a policy_denied event of the spec's shape", async () => {
    t = tempHome();
    t.write("default.yaml", "id: default\nname: d\nmode: enforce\ncommands:\n  denied: ['rm -rf /']\n");
    const x = io();
    const d = await decideForCli({ cmd: "rm -rf /", cwd: t.home, isTTY: false, stdin: x.stdin, stderr: x.stderr, home: t.home, sessionId: "ses_1" });
    expect(d).toMatchObject({ action: "deny", exitCode: 126, policy_id: "default", mode: "enforce" });
    expect(x.err()).toBe("substrate: denied by policy default: Command explicitly denied (pattern: rm -rf /)\n");
    expect(d.events.length).toBe(1);
    const ev = PolicyEvent.parse(d.events[0]);
    expect(ev).toMatchObject({ event_type: "policy_denied", command: "rm -rf /", reason: "Command explicitly denied", pattern: "rm -rf /", policy_id: "default", session_id: "ses_1" });
  });

  test("observe: runs, prints nothing, logs policy_violation (deny and approval alike)", async () => {
    t = tempHome();
    t.write("default.yaml", "id: default\nname: d\ncommands:\n  denied: ['sudo *']\n  require_approval: ['npm *']\n");
    const x = io();
    const a = await decideForCli({ cmd: "sudo ls", cwd: t.home, isTTY: false, stdin: x.stdin, stderr: x.stderr, home: t.home });
    expect(a.action).toBe("run");
    expect(a.events[0]).toMatchObject({ event_type: "policy_violation", would: "deny", pattern: "sudo *" });
    const b = await decideForCli({ cmd: "npm publish", cwd: t.home, isTTY: true, stdin: x.stdin, stderr: x.stderr, home: t.home });
    expect(b.action).toBe("run");
    expect(b.events[0]).toMatchObject({ event_type: "policy_violation", would: "approval_required" });
    expect(x.err()).toBe("");
  });

  test("isolated → run_isolated with restrictions", async () => {
    t = tempHome();
    const x = io();
    const d = await decideForCli({ cmd: "pip install requests", cwd: t.home, isTTY: false, stdin: x.stdin, stderr: x.stderr, home: t.home });
    expect(d).toMatchObject({ action: "run_isolated", restrictions: ["IsolatedWorld", "OverlayFS", "NetworkFilter"], policy_id: "default" });
  });

  test("spec acceptance: the approval prompt includes the diff preview from the dry run", async () => {
    t = tempHome();
    t.write("default.yaml", "id: default\nname: d\nmode: enforce\ncommands:\n  require_approval: ['npm *']\n");
    const x = io("2");
    const writes = Array.from({ length: 134 }, (_, i) => `node_modules/pkg${i}/index.js`);
    const d = await decideForCli({
      cmd: "npm install",
      cwd: t.home,
      isTTY: true,
      stdin: x.stdin,
      stderr: x.stderr,
      home: t.home,
      dryRun: async () => ({ writes, mods: ["package-lock.json"], deletes: [] }),
    });
    expect(x.err()).toContain("  Impact:  writes 134 files under node_modules, modifies package-lock.json\n");
    expect(d.action).toBe("run");
    expect(d.events).toEqual([expect.objectContaining({ event_type: "approval", reason: "session", source: "prompt" })]);
    // same process, no session id: the session approval holds
    const again = await decideForCli({ cmd: "npm install", cwd: t.home, isTTY: false, stdin: x.stdin, stderr: x.stderr, home: t.home, store: undefined });
    expect(again.action).toBe("deny"); // a new store instance = a new process: "session" was per process
  });

  test("a failing dry run does not block the prompt", async () => {
    t = tempHome();
    t.write("default.yaml", "id: default\nname: d\nmode: enforce\napproval:\n  require_approval: true\n");
    const x = io("1");
    const d = await decideForCli({
      cmd: "ls",
      cwd: t.home,
      isTTY: true,
      stdin: x.stdin,
      stderr: x.stderr,
      home: t.home,
      dryRun: async () => {
        throw new Error("no world\nstack");
      },
    });
    expect(x.err()).toContain("  Impact:  preview unavailable: no world\n");
    expect(d.action).toBe("run");
  });

  test("--require-approval (requireApproval) turns approvals on for one run", async () => {
    t = tempHome();
    t.write("default.yaml", "id: default\nname: d\nmode: enforce\n");
    const x = io();
    const d = await decideForCli({ cmd: "ls", cwd: t.home, isTTY: false, stdin: x.stdin, stderr: x.stderr, home: t.home, requireApproval: true });
    expect(d.action).toBe("deny");
    expect(x.err()).toContain("Policy requires approval for every command");
    // even in observe mode: the user asked for it
    t.write("default.yaml", "id: default\nname: d\nmode: observe\n");
    const y = io("4");
    const o = await decideForCli({ cmd: "ls", cwd: t.home, isTTY: true, stdin: y.stdin, stderr: y.stderr, home: t.home, requireApproval: true });
    expect(y.err()).toContain("Command Approval Request");
    expect(o).toMatchObject({ action: "deny", exitCode: 126 });
  });
});

test("summarizeDiff", () => {
  expect(summarizeDiff({ writes: ["a/x", "a/y"], mods: ["p.json"], deletes: ["q", "r"] })).toBe("writes 2 files under a, modifies p.json, deletes q, r");
  expect(summarizeDiff({ writes: ["only.txt"], mods: [], deletes: [] })).toBe("writes 1 file (only.txt)");
  expect(summarizeDiff({ writes: [], mods: [], deletes: [] })).toBe("no file changes");
  expect(summarizeDiff({ writes: ["a/1", "b/2", "b/3"], mods: ["1", "2", "3", "4"], deletes: [], truncated: true })).toBe("writes 3 files (mostly b, a), modifies 4 files (truncated)");
});
