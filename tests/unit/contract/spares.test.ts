/** Round trip of the isolated world pool's stats (src/contract/spares.ts) and their place in WorldStats. */
import { expect, test } from "bun:test";
import { SparePoolStats, WorldStats } from "../../../src/contract/index.ts";

const stats = { ttl_secs: 60, spares: 1, hits: 9, misses: 1, warmed: 10, dropped: 0 };

test("SparePoolStats round-trips; unknown or negative fields are refused", () => {
  expect(SparePoolStats.parse(JSON.parse(JSON.stringify(stats)))).toEqual(stats);
  expect(SparePoolStats.safeParse({ ...stats, extra: 1 }).success).toBe(false);
  expect(SparePoolStats.safeParse({ ...stats, hits: -1 }).success).toBe(false);
  expect(SparePoolStats.safeParse({ ...stats, spares: 0.5 }).success).toBe(false);
});

test("WorldStats.spares is optional (older agents do not send it)", () => {
  const w = { active: 1, created: 11, reused: 0, executes: 10, reuse_ratio: 0 };
  expect(WorldStats.parse(w)).toEqual(w);
  expect(WorldStats.parse(JSON.parse(JSON.stringify({ ...w, spares: stats })))).toEqual({ ...w, spares: stats });
});
