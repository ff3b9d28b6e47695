/**
 * Span contract: round trips, golden lines (the spec's examples, byte for byte through the
 * writer), rejection of malformed spans, and the replay report schema.
 */
import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PolicyCheckResult, ReplayContext, ReplayReport, Span, SpanEventType } from "../../../src/contract/index.ts";
import { serializeSpan, TraceWriter, findSpan, readSpans } from "../../../src/trace/index.ts";

const GOLDEN = join(import.meta.dir, "golden");
const goldens = fs.readdirSync(GOLDEN).filter((f) => f.endsWith(".json"));

describe("golden spans", () => {
  for (const g of goldens) {
    test(`${g}: parses, and the writer reproduces it byte for byte`, () => {
      const text = fs.readFileSync(join(GOLDEN, g), "utf8").trim();
      const span = Span.parse(JSON.parse(text));
      expect(serializeSpan(span).line.toString()).toBe(`${text}\n`);
      // round trip
      expect(Span.parse(JSON.parse(JSON.stringify(span)))).toEqual(span);
    });
  }

  test("the spec's field names are exactly the schema's keys", () => {
    const keys = Object.keys(Span.shape).sort();
    const spec = [
      "ts", "event_type", "session_id", "span_id", "parent_span", "component", "world_id", "world_backend",
      "policy_id", "policy_commit", "agent_id", "cwd", "cmd", "exit", "pty", "scopes_used", "fs_diff",
      "fs_diff_summary", "tree_hash", "egress_bytes", "duration_ms", "replay_context",
      "reason", "pattern", "replay_of",
      "egress", // ours (issue 15): the egress event's decision (name, port, reason, bytes)
    ].sort();
    expect(keys).toEqual(spec);
    expect(Object.keys(ReplayContext.shape).sort()).toEqual(
      ["path", "env_hash", "umask", "locale", "cwd", "policy_id", "policy_commit", "world_image_version"].sort(),
    );
    for (const e of ["command_start", "command_complete", "builtin_command", "policy_denied", "rate_limit"])
      expect(SpanEventType.options).toContain(e as never);
  });

  test("golden file written and read back through the trace file", async () => {
    const dir = fs.mkdtempSync(join(tmpdir(), "substrate-golden-"));
    try {
      const path = join(dir, "trace.jsonl");
      const w = new TraceWriter({ path });
      const spans = goldens.map((g) => Span.parse(JSON.parse(fs.readFileSync(join(GOLDEN, g), "utf8"))));
      for (const s of spans) w.write(s);
      expect(await readSpans({ path })).toEqual(spans);
      const cc = spans.find((s) => s.cmd === "npm install")!;
      expect(await findSpan(cc.span_id, path)).toEqual(cc);
      expect((await readSpans({ path, agent_id: "cursor" })).map((s) => s.cmd)).toEqual(["npm test"]);
      expect((await readSpans({ path, cmd: "npm *" })).length).toBe(2);
      expect((await readSpans({ path, cmd: "rm -rf" })).length).toBe(1);
      expect((await readSpans({ path, last: 1 })).map((s) => s.span_id)).toEqual([spans.at(-1)!.span_id]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("rejections", () => {
  const base = {
    ts: "2024-01-01T00:00:00.000Z",
    event_type: "command_start",
    session_id: "ses_x",
    span_id: "spn_0192f1c2-7a00-7000-8000-0000000000aa",
    component: "shell",
  };
  test("agent_id defaults to human", () => {
    expect(Span.parse(base).agent_id).toBe("human");
  });
  test.each([
    ["bad span id", { span_id: "span_1" }],
    ["unknown event", { event_type: "command_done" }],
    ["unknown component", { component: "daemon" }],
    ["unknown field (typo)", { exit_code: 0 }],
    ["non-ISO ts", { ts: "yesterday" }],
    ["env values smuggled in", { env: { A: "b" } }],
    ["bad tree hash", { tree_hash: "md5:abc" }],
  ])("%s is rejected", (_n, patch) => {
    expect(Span.safeParse({ ...base, ...patch }).success).toBe(false);
    expect(() => serializeSpan({ ...base, ...patch } as never)).toThrow();
  });
});

describe("report schemas round-trip", () => {
  test("ReplayReport", () => {
    const r: ReplayReport = {
      span_id: "spn_0192f1c2-7a00-7000-8000-0000000000aa",
      reproduced: true,
      cmd: "make",
      exit: { original: 0, replay: 0, match: true },
      fs_diff: {
        compared: true,
        match: true,
        original_summary: "1 write, 0 mods, 0 deletes",
        replay_summary: "1 write, 0 mods, 0 deletes",
        only_in_original: { writes: [], mods: [], deletes: [] },
        only_in_replay: { writes: [], mods: [], deletes: [] },
        tree_hash: { original: null, replay: null },
      },
      warnings: ["Policy has changed since span was recorded"],
    };
    expect(ReplayReport.parse(JSON.parse(JSON.stringify(r)))).toEqual(r);
  });
  test("PolicyCheckResult", () => {
    const r = {
      span_id: "spn_0192f1c2-7a00-7000-8000-0000000000aa",
      ts: "2024-01-01T00:00:00.000Z",
      cmd: "rm -rf /",
      cwd: "/",
      decision: "deny",
      reason: "Command explicitly denied",
      pattern: "rm -rf /",
      recorded: "ran",
    } as const;
    expect(PolicyCheckResult.parse(JSON.parse(JSON.stringify(r)))).toEqual(r);
  });
});
