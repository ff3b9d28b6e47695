import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Span } from "../../../src/contract/index.ts";
import { CommandSpan, readSpans, recordExecuteSpan } from "../../../src/trace/index.ts";

const dir = fs.mkdtempSync(join(tmpdir(), "substrate-cmdspan-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("CommandSpan", () => {
  test("start + complete: one span id, two valid lines, replay context, no env values", async () => {
    const tracePath = join(dir, "a.jsonl");
    const env = { PATH: "/bin", LANG: "C", API_TOKEN: "tok-SECRET-value", SUBSTRATE_AGENT_ID: "claude" };
    const s = CommandSpan.start({ cmd: "make test", cwd: "/p", env, component: "shell", policy_id: "default", policy_commit: "abc1234", world_image_version: "0.1.0+x.y", tracePath });
    expect(s.env.SUBSTRATE_SPAN_ID).toBe(s.id);
    s.complete({ exit: 2, world_id: `wld_${Bun.randomUUIDv7()}`, scopes_used: ["fs.write:/p"], fs_diff: { writes: ["a.o"], mods: [], deletes: [] } });
    s.complete({ exit: 0 }); // idempotent
    const lines = fs.readFileSync(tracePath, "utf8").trim().split("\n");
    expect(lines).toHaveLength(2);
    const [start, done] = lines.map((l) => Span.parse(JSON.parse(l)));
    expect(start).toMatchObject({ event_type: "command_start", span_id: s.id, agent_id: "claude", cmd: "make test" });
    expect(start!.exit).toBeUndefined();
    expect(done).toMatchObject({ event_type: "command_complete", span_id: s.id, exit: 2, policy_commit: "abc1234" });
    expect(done!.replay_context).toMatchObject({ path: "/bin", locale: "C", cwd: "/p", policy_id: "default", world_image_version: "0.1.0+x.y" });
    expect(fs.readFileSync(tracePath, "utf8")).not.toContain("tok-SECRET-value");
  });

  test("a nested command becomes a child span through SUBSTRATE_SPAN_ID", async () => {
    const tracePath = join(dir, "n.jsonl");
    const outer = CommandSpan.start({ cmd: "outer", cwd: "/", env: {}, component: "shell", tracePath });
    recordExecuteSpan({
      span_id: `spn_${Bun.randomUUIDv7()}`, started_at: new Date().toISOString(), duration_ms: 1.5,
      cmd: "inner", cwd: "/", env: outer.env, component: "api", agent_id: "cursor", exit: 0, tracePath,
    });
    outer.complete({ exit: 0 });
    // and a nested `substrate -c` (CommandSpan with the outer env) too
    const nested = CommandSpan.start({ cmd: "nested", cwd: "/", env: { ...outer.env }, component: "shell", tracePath });
    nested.complete({ exit: 0 });
    const kids = await readSpans({ path: tracePath, parent_span: outer.id, event_type: "command_complete" });
    expect(kids.map((k) => [k.cmd, k.component, k.session_id])).toEqual([
      ["inner", "api", outer.env.SUBSTRATE_SESSION_ID],
      ["nested", "shell", outer.env.SUBSTRATE_SESSION_ID],
    ]);
  });

  test("an unwritable trace warns once and never throws", () => {
    const blocker = join(dir, "file");
    fs.writeFileSync(blocker, "");
    const tracePath = join(blocker, "sub", "t.jsonl"); // parent is a file: mkdir fails
    const orig = process.stderr.write.bind(process.stderr);
    const seen: string[] = [];
    process.stderr.write = ((s: string) => (seen.push(String(s)), true)) as typeof process.stderr.write;
    try {
      const s = CommandSpan.start({ cmd: "x", cwd: "/", env: {}, component: "shell", tracePath });
      s.complete({ exit: 0 });
    } finally {
      process.stderr.write = orig;
    }
    expect(seen.filter((l) => l.includes("cannot write the trace"))).toHaveLength(1);
  });
});
