/** Round trip of FsApplyResponse.interrupted (issue 18 faults: an apply finished after one was killed half way). */
import { expect, test } from "bun:test";
import { FsApplyResponse } from "../../../src/contract/fsdiff.ts";

test("FsApplyResponse.interrupted is optional and round-trips; its shape is strict", () => {
  const plain = { applied: ["a.txt"], skipped: [] };
  expect(FsApplyResponse.parse(plain)).toEqual(plain);
  const resumed = { ...plain, interrupted: { landed: ["many/f1", "many/f2"] } };
  expect(FsApplyResponse.parse(JSON.parse(JSON.stringify(resumed)))).toEqual(resumed);
  expect(FsApplyResponse.safeParse({ ...plain, interrupted: { landed: ["x"], extra: 1 } }).success).toBe(false);
  expect(FsApplyResponse.safeParse({ ...plain, interrupted: {} }).success).toBe(false);
});
