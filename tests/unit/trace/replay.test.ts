/**
 * Replay logic: golden span (a command writing files) recorded, replayed, same exit and diff;
 * drift warnings; differing runs reported; redacted commands refused; policy what-if.
 *
 * The "world" here is a real but host-side stand-in implementing ReplayWorld: every execute
 * runs `bash -c` for real in a FRESH copy of the project directory and diffs the copy against
 * the original (writes/mods/deletes). It exercises everything replay controls (request shape,
 * cwd, PATH, umask, locale, comparison) but not namespace isolation: the end-to-end replay
 * through the world agent is tests/integration/trace-replay.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import type { ExecuteRequestInput, ExecuteResponse, FsDiff, Span } from "../../../src/contract/index.ts";
import { newSpanId, newWorldId, ReplayReport } from "../../../src/contract/index.ts";
import {
  buildReplayContext,
  checkSpansAgainstPolicy,
  compareFsDiff,
  driftWarnings,
  findSpan,
  formatReplayReport,
  IMAGE_DRIFT,
  POLICY_DRIFT,
  readSpans,
  replayRequest,
  replaySpan,
  ReplayError,
  TraceWriter,
  type ReplayWorld,
} from "../../../src/trace/index.ts";

let root: string;
let project: string;
let trace: string;
beforeAll(() => {
  root = fs.mkdtempSync(join(tmpdir(), "substrate-replay-"));
  project = join(root, "project");
  fs.mkdirSync(join(project, "src"), { recursive: true });
  fs.writeFileSync(join(project, "src", "a.ts"), "export const a = 1;\n");
  fs.writeFileSync(join(project, "old.txt"), "old\n");
  trace = join(root, "trace.jsonl");
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function snapshot(dir: string): Map<string, string> {
  const m = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else m.set(relative(dir, p), `${fs.statSync(p).mode}:${Bun.hash(fs.readFileSync(p))}`);
    }
  };
  walk(dir);
  return m;
}

/** Host-side stand-in for an isolated world: a fresh copy per execute, diffed afterwards. */
function copyWorld(image: string | null): ReplayWorld & { requests: ExecuteRequestInput[] } {
  const requests: ExecuteRequestInput[] = [];
  return {
    requests,
    async worldImageVersion() {
      return image;
    },
    async execute(req): Promise<ExecuteResponse> {
      requests.push(req);
      expect(req.isolated).toBe(true);
      const copy = fs.mkdtempSync(join(root, "world-"));
      fs.cpSync(project, copy, { recursive: true });
      const before = snapshot(copy);
      const cwd = req.cwd ? req.cwd.replace(project, copy) : copy;
      const p = Bun.spawnSync(["bash", "-c", req.cmd!], { cwd, env: { ...req.env, HOME: root } });
      const after = snapshot(copy);
      const diff: FsDiff = { writes: [], mods: [], deletes: [] };
      for (const [k, v] of after) {
        if (!before.has(k)) diff.writes.push(k);
        else if (before.get(k) !== v) diff.mods.push(k);
      }
      for (const k of before.keys()) if (!after.has(k)) diff.deletes.push(k);
      fs.rmSync(copy, { recursive: true, force: true });
      return {
        exit: p.exitCode ?? 1,
        span_id: newSpanId(),
        stdout_b64: p.stdout.toString("base64"),
        stderr_b64: p.stderr.toString("base64"),
        scopes_used: [],
        world_id: newWorldId(),
        fs_diff: diff,
      };
    },
  };
}

/** Record a span the way `substrate -c` does: run it (isolated), write command_complete. */
async function record(cmd: string, image = "0.1.0+abc.h1", policyCommit = "1111111"): Promise<Span> {
  const w = copyWorld(image);
  const env = { PATH: "/usr/bin:/bin", LANG: "C.UTF-8", SECRET_THING: "never-written" };
  const res = await w.execute({ cmd, cwd: project, env, agent_id: "claude", isolated: true });
  return new TraceWriter({ path: trace }).write({
    ts: new Date().toISOString(),
    event_type: "command_complete",
    session_id: "ses_test",
    span_id: newSpanId(),
    component: "world",
    world_id: res.world_id,
    policy_id: "default",
    policy_commit: policyCommit,
    agent_id: "claude",
    cwd: project,
    cmd,
    exit: res.exit,
    fs_diff: res.fs_diff,
    replay_context: buildReplayContext({
      cwd: project,
      env,
      umask: "0027",
      policyId: "default",
      policyCommit,
      worldImageVersion: image,
    }),
  });
}

describe("golden replay", () => {
  test("a command writing files: replayed, same exit and same diff -> reproduced", async () => {
    const span = await record("mkdir -p out && echo hi > out/x.ts && echo more >> src/a.ts && rm old.txt && exit 3");
    expect(span.exit).toBe(3);
    expect(span.fs_diff).toEqual({ writes: ["out/x.ts"], mods: ["src/a.ts"], deletes: ["old.txt"] });
    const found = (await findSpan(span.span_id, trace))!;
    const world = copyWorld("0.1.0+abc.h1");
    const r = await replaySpan(found, { world, policyCommit: "1111111", tracePath: trace });
    expect(ReplayReport.parse(r)).toEqual(r);
    expect(r.reproduced).toBe(true);
    expect(r.exit).toEqual({ original: 3, replay: 3, match: true });
    expect(r.fs_diff.match).toBe(true);
    expect(r.warnings).toEqual([]);
    expect(r.output).toEqual({ stdout: "", stderr: "", truncated: false });
    // the replay itself is traced, linked to the original
    const rs = await readSpans({ path: trace, event_type: "replay" });
    expect(rs.at(-1)).toMatchObject({ span_id: r.replay_span_id, replay_of: span.span_id, exit: 3 });
    expect(fs.readFileSync(trace, "utf8")).not.toContain("never-written");
  });

  test("the recorded cwd, PATH, locale and umask are what the command sees", async () => {
    const span = await record("umask > mask.txt; echo \"$PATH|$LANG|$LC_ALL\" > env.txt; pwd > pwd.txt");
    const world = copyWorld("0.1.0+abc.h1");
    const req = replayRequest(span);
    expect(req).toMatchObject({
      cwd: project,
      env: { PATH: "/usr/bin:/bin", LANG: "C.UTF-8", LC_ALL: "C.UTF-8" },
      agent_id: "claude",
      isolated: true,
      world: { reuse_session: false },
    });
    expect(req.cmd!.startsWith("umask 0027\n")).toBe(true);
    // run it and look at what the command saw
    const copy = fs.mkdtempSync(join(root, "see-"));
    const p = Bun.spawnSync(["bash", "-c", req.cmd!], { cwd: copy, env: req.env });
    expect(p.exitCode).toBe(0);
    expect(fs.readFileSync(join(copy, "mask.txt"), "utf8").trim()).toBe("0027");
    expect(fs.readFileSync(join(copy, "env.txt"), "utf8").trim()).toBe("/usr/bin:/bin|C.UTF-8|C.UTF-8");
    const r = await replaySpan(span, { world, record: false });
    expect(r.reproduced).toBe(true);
    const v = await replaySpan({ ...span, cmd: "echo visible-output; echo to-err >&2" }, { world, record: false });
    expect(v.output).toMatchObject({ stdout: "visible-output\n", stderr: "to-err\n" });
    expect(formatReplayReport(v, true)).toContain("    | visible-output");
    expect(formatReplayReport(v, false)).not.toContain("| visible-output");
  });
});

describe("drift and differences", () => {
  test("policy change -> 'Policy has changed since span was recorded'; image change warned", async () => {
    const span = await record("echo x > y.ts");
    const r = await replaySpan(span, { world: copyWorld("0.2.0+def.h2"), policyCommit: "2222222", record: false });
    expect(r.warnings.some((w) => w.startsWith(POLICY_DRIFT))).toBe(true);
    expect(r.warnings.some((w) => w.startsWith(IMAGE_DRIFT))).toBe(true);
    expect(r.reproduced).toBe(true); // drift is a warning, not a failure
    expect(formatReplayReport(r)).toContain("Policy has changed since span was recorded");
    // no drift when nothing changed
    expect(driftWarnings(span, { policyCommit: "1111111", worldImageVersion: "0.1.0+abc.h1" })).toEqual([]);
    // an uncommitted edit shows up as a different policy_commit too
    expect(driftWarnings(span, { policyCommit: "1111111-dirty.abcd1234", worldImageVersion: undefined })).toHaveLength(1);
  });

  test("a command that behaves differently now is NOT reproduced, with the differing paths", async () => {
    fs.writeFileSync(join(project, "flag"), "1");
    const span = await record("if [ -f flag ]; then echo a > a.ts; exit 0; else echo b > b.ts; exit 1; fi");
    fs.rmSync(join(project, "flag"));
    const r = await replaySpan(span, { world: copyWorld("0.1.0+abc.h1"), record: false });
    expect(r.reproduced).toBe(false);
    expect(r.exit).toEqual({ original: 0, replay: 1, match: false });
    expect(r.fs_diff.only_in_original.writes).toEqual(["a.ts"]);
    expect(r.fs_diff.only_in_replay.writes).toEqual(["b.ts"]);
    const text = formatReplayReport(r);
    expect(text).toContain("NOT REPRODUCED");
    expect(text).toContain("a.ts   (original only)");
  });

  test("redacted commands are refused (exit 4), never run with the placeholder", async () => {
    const span = await record("curl --token SECRETVALUE123 http://127.0.0.1:1/");
    expect(span.cmd).toContain("[REDACTED]");
    const world = copyWorld(null);
    await expect(replaySpan(span, { world })).rejects.toBeInstanceOf(ReplayError);
    await expect(replaySpan(span, { world })).rejects.toMatchObject({ exitCode: 4 });
    expect(world.requests).toHaveLength(0);
  });

  test("truncated diffs compare by tree hash; absent original diff compares exit only", () => {
    const h1 = `sha256:${"a".repeat(64)}`;
    const h2 = `sha256:${"b".repeat(64)}`;
    const big = { writes: ["x"], mods: [], deletes: [], truncated: true, tree_hash: h1 };
    expect(compareFsDiff({ fs_diff: big }, { ...big, writes: ["y"] }, "/p").match).toBe(true);
    expect(compareFsDiff({ fs_diff: big }, { ...big, tree_hash: h2 }, "/p").match).toBe(false);
    expect(compareFsDiff({ fs_diff_summary: "12 dirs, 54 files", tree_hash: h1 }, big, "/p").match).toBe(true);
    expect(compareFsDiff({}, big, "/p")).toMatchObject({ compared: false, match: true });
    // absolute and relative spellings of the same path agree
    expect(
      compareFsDiff({ fs_diff: { writes: ["/p/a"], mods: [], deletes: [] } }, { writes: ["a"], mods: [], deletes: [] }, "/p")
        .match,
    ).toBe(true);
  });
});

describe("replay --policy (what-if, no execution)", () => {
  test("verdict per recorded command, with the recorded outcome", () => {
    const mk = (event_type: Span["event_type"], cmd: string, id = newSpanId()): Span => ({
      ts: "2026-01-01T00:00:00.000Z",
      event_type,
      session_id: "s",
      span_id: id,
      component: "shell",
      agent_id: "human",
      cwd: "/p",
      cmd,
    });
    const id = newSpanId();
    const spans = [mk("command_start", "rm -rf /", id), mk("command_complete", "rm -rf /", id), mk("command_complete", "ls"), mk("policy_denied", "curl x")];
    const res = checkSpansAgainstPolicy(spans, (cmd) =>
      cmd.startsWith("rm -rf") ? { decision: "deny", reason: "Command explicitly denied", pattern: "rm -rf *" } : { decision: "allow" },
    );
    expect(res.map((r) => [r.cmd, r.decision, r.recorded])).toEqual([
      ["rm -rf /", "deny", "ran"],
      ["ls", "allow", "ran"],
      ["curl x", "allow", "denied"],
    ]);
    expect(res[0]).toMatchObject({ pattern: "rm -rf *", cwd: "/p" });
  });
});
