import { expect, test } from "bun:test";
import {
  FS_DIFF_ROUTES,
  FsApplyRequest,
  FsApplyResponse,
  FsDiffParams,
  FsDiffResponse,
  FsDiscardResponse,
  IsolatedResultRecord,
  OverlayMountRecord,
} from "../../../src/contract/index.ts";

const rt = <T>(schema: { parse: (v: unknown) => T }, v: T) => expect(schema.parse(JSON.parse(JSON.stringify(v)))).toEqual(v);

test("FsDiffResponse round-trips (plain and truncated) and rejects unknown fields / bad hashes", () => {
  rt(FsDiffResponse, { writes: ["a.txt", "dir/"], mods: ["m"], deletes: ["gone/"], summary: "2 dirs, 2 files" });
  const t = {
    writes: ["node_modules/"],
    mods: [],
    deletes: [],
    truncated: true,
    tree_hash: `sha256:${"a".repeat(64)}`,
    summary: "1200 dirs, 50000 files (truncated, see tree_hash)",
  };
  rt(FsDiffResponse, t);
  expect(FsDiffResponse.safeParse({ ...t, extra: 1 }).success).toBe(false);
  expect(FsDiffResponse.safeParse({ ...t, tree_hash: "md5:abc" }).success).toBe(false);
});

test("FsApplyRequest: optional non-empty relative paths; rejects absolute, .., empty segments", () => {
  rt(FsApplyRequest, {});
  rt(FsApplyRequest, { paths: ["src/a.ts", "build/", ".hidden"] });
  for (const bad of ["/etc/passwd", "../x", "a/../b", "a//b", "./a", "", "a\0b"]) {
    expect(FsApplyRequest.safeParse({ paths: [bad] }).success).toBe(false);
  }
  expect(FsApplyRequest.safeParse({ paths: [] }).success).toBe(false);
  expect(FsApplyRequest.safeParse({ paths: ["a"], force: true }).success).toBe(false);
});

test("FsApplyResponse / FsDiscardResponse / params round-trip", () => {
  rt(FsApplyResponse, { applied: ["a", "b/"], skipped: [{ path: "fifo", reason: "fifo" }] });
  expect(FsApplyResponse.safeParse({ applied: [] }).success).toBe(false);
  rt(FsDiscardResponse, { discarded: true });
  expect(FsDiscardResponse.safeParse({ discarded: false }).success).toBe(false);
  rt(FsDiffParams, { span_id: "spn_0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b" });
  expect(FsDiffParams.safeParse({ span_id: "wld_0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b" }).success).toBe(false);
  expect(FS_DIFF_ROUTES).toEqual({
    get: "/v1/fs_diff/:span_id",
    apply: "/v1/fs_diff/:span_id/apply",
    discard: "/v1/fs_diff/:span_id/discard",
  });
});

test("OverlayMountRecord round-trips; strategy enum and strictness enforced", () => {
  rt(OverlayMountRecord, { strategy: "overlay", userxattr: true });
  rt(OverlayMountRecord, { strategy: "fuse", userxattr: false });
  expect(OverlayMountRecord.safeParse({ strategy: "bind", userxattr: false }).success).toBe(false);
  expect(OverlayMountRecord.safeParse({ strategy: "fuse" }).success).toBe(false);
});

test("IsolatedResultRecord round-trips and checks ids", () => {
  const r = {
    span_id: "spn_0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
    world_id: "wld_0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
    project_dir: "/home/u/p",
  };
  rt(IsolatedResultRecord, r);
  expect(IsolatedResultRecord.safeParse({ ...r, project_dir: "rel" }).success).toBe(false);
  expect(IsolatedResultRecord.safeParse({ ...r, span_id: r.world_id }).success).toBe(false);
});
