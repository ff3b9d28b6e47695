/** `trace --follow`: new lines are yielded as they are written, across a rotation, none twice. */
import { afterAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { followSpans, TraceWriter } from "../../../src/trace/index.ts";

const dir = fs.mkdtempSync(join(tmpdir(), "substrate-follow-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test("follow yields appended spans (filtered), survives rotation, skips what was there before", async () => {
  const path = join(dir, "t.jsonl");
  const w = new TraceWriter({ path, maxBytes: 1500, keep: 20 });
  const line = (cmd: string, agent = "human") =>
    w.write({ ts: new Date().toISOString(), event_type: "command_complete", session_id: "s", span_id: `spn_${Bun.randomUUIDv7()}`, component: "shell", agent_id: agent, cmd, exit: 0 });
  line("before");
  const stop = new AbortController();
  const got: string[] = [];
  const done = (async () => {
    for await (const s of followSpans({ path, agent_id: "claude" }, { intervalMs: 10, signal: stop.signal })) {
      got.push(s.cmd!);
      if (got.length === 30) stop.abort();
    }
  })();
  await Bun.sleep(30);
  for (let i = 0; i < 30; i++) {
    line(`c${i} ${"p".repeat(150)}`, "claude");
    line("other", "cursor");
    if (i % 5 === 0) await Bun.sleep(25); // let the follower poll between bursts and rotations
  }
  const timeout = setTimeout(() => stop.abort(), 10_000);
  await done;
  clearTimeout(timeout);
  expect(fs.existsSync(`${path}.3`)).toBe(true); // several rotations happened meanwhile
  expect(got.map((c) => c.split(" ")[0])).toEqual(Array.from({ length: 30 }, (_, i) => `c${i}`));
});
