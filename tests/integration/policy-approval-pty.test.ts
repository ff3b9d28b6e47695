/**
 * Approvals driven through a real PTY (Bun.spawn `terminal`): `substrate -c` prompts on the
 * terminal; allow once / for this session / always / deny; the cache honours each scope and
 * resets when the session switches profile (spec acceptance lines).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { policyEnv, SUBSTRATE, type PolicyEnv } from "./_policy-env.ts";

let e: PolicyEnv;
afterEach(() => e?.cleanup());

const PROMPT = "Choice [1-4, Enter = deny]: ";

/** Run substrate under a PTY, answering each prompt with the next answer. */
async function pty(args: string[], answers: string[], o: { cwd: string; env?: Record<string, string> }): Promise<{ code: number; out: string; prompts: number }> {
  let out = "";
  let prompts = 0;
  const proc = Bun.spawn([...SUBSTRATE, ...args], {
    cwd: o.cwd,
    env: { ...e.env, TERM: "dumb", ...o.env },
    terminal: {
      cols: 200,
      rows: 40,
      data(term, data) {
        out += Buffer.from(data).toString("utf8");
        while (out.split(PROMPT).length - 1 > prompts) {
          const a = answers[prompts++];
          term.write(a === undefined ? "\x04" : `${a}\r`); // no answer left: EOF (Ctrl-D)
        }
      },
    },
  });
  const timer = setTimeout(() => proc.kill(), 30_000); // a hang fails the test instead of blocking the suite
  const code = await proc.exited;
  clearTimeout(timer);
  proc.terminal?.close();
  return { code, out: out.replace(/\r/g, ""), prompts };
}

function setup(): { proj: string; marker: string } {
  e = policyEnv();
  e.writePolicy(
    "dev.yaml",
    "id: dev\nname: Dev\nmode: enforce\ncommands:\n  require_approval: ['touch *']\napproval:\n  auto_approve: ['touch auto-*']\n",
  );
  // stricter than dev (a project file may only tighten the recorded policy, issue 14 item 4)
  e.writePolicy(
    "other.yaml",
    "id: other\nname: Other\nmode: enforce\ncommands:\n  denied: ['sudo *']\n  require_approval: ['touch *']\napproval:\n  auto_approve: ['touch auto-*']\n",
  );
  const proj = join(e.home, "proj");
  mkdirSync(join(proj, "vendor"), { recursive: true });
  writeFileSync(join(proj, ".substrate-profile"), "dev\n");
  writeFileSync(join(proj, "vendor", ".substrate-profile"), "other\n");
  return { proj, marker: join(proj, "m") };
}

describe("approval prompt on a TTY", () => {
  test("the prompt shows the command, the policy and the reason; once runs it once", async () => {
    const { proj, marker } = setup();
    const r = await pty(["-c", `touch ${marker}`], ["1"], { cwd: proj });
    expect(r.code).toBe(0);
    expect(r.prompts).toBe(1);
    expect(r.out).toContain("Command Approval Request");
    expect(r.out).toContain(`Command: touch ${marker}`);
    expect(r.out).toContain(`Policy:  dev (${join(e.policies, "dev.yaml")})`);
    expect(r.out).toContain("Reason:  Command requires approval (pattern: touch *)");
    expect(statSync(marker).isFile()).toBe(true);
    // once is not remembered
    const again = await pty(["-c", `touch ${marker}`], ["1"], { cwd: proj });
    expect(again.prompts).toBe(1);
    const approvals = e.traceLines().filter((s) => s.event_type === "approval");
    expect(approvals.map((s) => s.reason)).toEqual(["once", "once"]);
  });

  test("deny (and Enter, and EOF) exits 126 without running the command", async () => {
    const { proj, marker } = setup();
    for (const answer of ["4", "", undefined]) {
      const r = await pty(["-c", `touch ${marker}`], answer === undefined ? [] : [answer], { cwd: proj });
      expect({ answer, code: r.code }).toEqual({ answer, code: 126 });
      expect(r.out).toContain("substrate: denied by policy dev: User denied approval (pattern: touch *)");
    }
    expect(() => statSync(marker)).toThrow();
    expect(e.traceLines().filter((s) => s.event_type === "policy_denied").length).toBe(3);
  });

  test("a wrong answer is asked again", async () => {
    const { proj, marker } = setup();
    const r = await pty(["-c", `touch ${marker}`], ["maybe", "1"], { cwd: proj });
    expect(r.prompts).toBe(2);
    expect(r.out).toContain('"maybe" is not a choice');
    expect(r.code).toBe(0);
  });

  test("auto_approve skips the prompt", async () => {
    const { proj } = setup();
    const r = await pty(["-c", "touch auto-x"], [], { cwd: proj });
    expect(r.prompts).toBe(0);
    expect(r.code).toBe(0);
  });

  test("spec acceptance: session approvals hold within the session, reset on profile switch", async () => {
    const { proj, marker } = setup();
    const s1 = { SUBSTRATE_SESSION_ID: "ses_test_one" };
    const first = await pty(["-c", `touch ${marker}`], ["2"], { cwd: proj, env: s1 });
    expect(first.code).toBe(0);
    const second = await pty(["-c", `touch ${marker}`], [], { cwd: proj, env: s1 });
    expect({ prompts: second.prompts, code: second.code }).toEqual({ prompts: 0, code: 0 });
    // another session does not inherit it
    const other = await pty(["-c", `touch ${marker}`], ["4"], { cwd: proj, env: { SUBSTRATE_SESSION_ID: "ses_test_two" } });
    expect(other.prompts).toBe(1);
    // the session moves into a directory with another profile (vendor → policy "other") ...
    const moved = await pty(["-c", "touch auto-x"], [], { cwd: join(proj, "vendor"), env: s1 });
    expect(moved.code).toBe(0); // auto-approved under "other"
    // ... and back: its session approvals were cleared by the switch
    const back = await pty(["-c", `touch ${marker}`], ["4"], { cwd: proj, env: s1 });
    expect(back.prompts).toBe(1);
    expect(back.code).toBe(126);
  });

  test("spec acceptance: always persists across sessions in approvals.json (0600) until the policy changes", async () => {
    const { proj, marker } = setup();
    const a = await pty(["-c", `touch ${marker}`], ["3"], { cwd: proj, env: { SUBSTRATE_SESSION_ID: "ses_a" } });
    expect(a.code).toBe(0);
    const file = join(e.home, ".substrate", "approvals.json");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(file, "utf8")).entries).toEqual([
      expect.objectContaining({ policy_id: "dev", cwd_prefix: proj, command_pattern: `touch ${marker}`, scope: "always" }),
    ]);
    const b = await pty(["-c", `touch ${marker}`], [], { cwd: proj, env: { SUBSTRATE_SESSION_ID: "ses_b" } });
    expect({ prompts: b.prompts, code: b.code }).toEqual({ prompts: 0, code: 0 });
    const sub = join(proj, "sub");
    mkdirSync(sub);
    const below = await pty(["-c", `touch ${marker}`], [], { cwd: sub });
    expect(below.prompts).toBe(0); // cwd prefix: holds below the approved directory
    // editing the policy invalidates it
    e.writePolicy("dev.yaml", `${readFileSync(join(e.policies, "dev.yaml"), "utf8")}# edited\nworld:\n  reuse_session: false\n`);
    const edited = await pty(["-c", `touch ${marker}`], ["4"], { cwd: proj, env: { SUBSTRATE_SESSION_ID: "ses_b" } });
    expect(edited.prompts).toBe(1);
  });
});
