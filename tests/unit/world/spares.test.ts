/** The isolated world pool's pure parts: the TTL setting and the key (agent/world/spares.ts). */
import { expect, test } from "bun:test";
import { DEFAULT_SPARE_TTL_SECS, spareKey, spareTtlMsFromEnv } from "../../../agent/world/spares.ts";
import { WorldSpec } from "../../../src/contract/world.ts";

test("SUBSTRATE_SPARE_TTL_SECS: seconds, 0 = off, a bad value falls back to the default and says so", () => {
  expect(spareTtlMsFromEnv({})).toBe(DEFAULT_SPARE_TTL_SECS * 1000);
  expect(spareTtlMsFromEnv({ SUBSTRATE_SPARE_TTL_SECS: "0" })).toBe(0);
  expect(spareTtlMsFromEnv({ SUBSTRATE_SPARE_TTL_SECS: "2.5" })).toBe(2500);
  expect(spareTtlMsFromEnv({ SUBSTRATE_SPARE_TTL_SECS: "99999999" })).toBe(2 ** 31 - 1);
  for (const bad of ["abc", "-1", "Infinity"]) {
    const logs: string[] = [];
    expect(spareTtlMsFromEnv({ SUBSTRATE_SPARE_TTL_SECS: bad }, (m) => logs.push(m))).toBe(DEFAULT_SPARE_TTL_SECS * 1000);
    expect(logs).toHaveLength(1);
    expect(logs[0]).toContain("0 turns the isolated world pool off");
  }
});

test("the key covers every spec field that shapes a world, and the overlay base; not reuse_session", () => {
  const spec = WorldSpec.parse({ project_dir: "/p" });
  const k = spareKey(spec, "/b");
  expect(spareKey({ ...spec, reuse_session: false }, "/b")).toBe(k);
  for (const other of [
    { ...spec, project_dir: "/q" },
    { ...spec, isolate_network: false },
    { ...spec, limits: { pids: 10 } },
    { ...spec, allowed_domains: ["example.com"] },
    { ...spec, fs_mode: "read_only" as const },
    { ...spec, fs_isolation: "full" as const },
    { ...spec, enable_preload: true },
    { ...spec, fs_view: { read: [], write: ["~/.cache/**"], deny_read: [], read_only: [] } }, // issue 13 (FSVIEW)
    { ...spec, allow_ptrace: true }, // issue 14.1
    { ...spec, root_inside: true }, // issue 13 (rootless)
  ]) expect(spareKey(other, "/b")).not.toBe(k);
  // egress (issue 15) is the gateway's live policy, applied to a spare when it is taken (manager.ts)
  expect(spareKey({ ...spec, egress: { policy_id: "x" } } as typeof spec, "/b")).toBe(k);
  expect(spareKey(spec, "/c")).not.toBe(k);
  // Every WorldSpec field is either in the key, reuse_session or egress (a new field must be added).
  expect(Object.keys(WorldSpec.shape).sort()).toEqual(
    ["allow_ptrace", "allowed_domains", "egress", "enable_preload", "fs_isolation", "fs_mode", "fs_view", "isolate_network", "limits", "project_dir", "reuse_session", "root_inside"],
  );
});
