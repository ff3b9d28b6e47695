/** Round trip of the idle world stats (issue 18.6, src/contract/capabilities.ts) and their place in WorldStats and `world status`. */
import { expect, test } from "bun:test";
import { WorldIdleStats, WorldStats, WorldStatusReport } from "../../../src/contract/index.ts";

const idle = { ttl_secs: 900, idle: 2, retired: 16 };

test("WorldIdleStats round-trips; unknown, negative or fractional counts are refused", () => {
  expect(WorldIdleStats.parse(JSON.parse(JSON.stringify(idle)))).toEqual(idle);
  expect(WorldIdleStats.parse({ ...idle, ttl_secs: 0 })).toEqual({ ...idle, ttl_secs: 0 });
  expect(WorldIdleStats.safeParse({ ...idle, extra: 1 }).success).toBe(false);
  expect(WorldIdleStats.safeParse({ ...idle, retired: -1 }).success).toBe(false);
  expect(WorldIdleStats.safeParse({ ...idle, idle: 0.5 }).success).toBe(false);
  expect(WorldIdleStats.safeParse({ ...idle, ttl_secs: -1 }).success).toBe(false);
});

test("WorldStats.idle is optional (older agents do not send it)", () => {
  const w = { active: 1, created: 11, reused: 0, executes: 10, reuse_ratio: 0 };
  expect(WorldStats.parse(w)).toEqual(w);
  expect(WorldStats.parse(JSON.parse(JSON.stringify({ ...w, idle })))).toEqual({ ...w, idle });
});

test("WorldStatusReport.idle is optional and round-trips", () => {
  const r = {
    schema_version: 1,
    backend: "linux-local",
    mode: "manual",
    running: true,
    agent: { version: "0.1.0", embedded_version: "0.1.0", version_match: true, pid: 42, uptime_ms: 1000 },
    socket: { path: "/run/substrate.sock", exists: true, owner: "root", group: "substrate", mode: "0660" },
    units: null,
    worlds: [],
    degraded: [],
  };
  expect(WorldStatusReport.parse(r)).toEqual(r as never);
  expect(WorldStatusReport.parse(JSON.parse(JSON.stringify({ ...r, idle })))).toEqual({ ...r, idle } as never);
});
