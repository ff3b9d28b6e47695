/**
 * Routes for an isolated world's fs diff (issue 3 "Filesystem isolation and diff"): fetch the
 * diff of a span, then apply it to the host project (all or per path) or discard it. The diff
 * body itself is the spec's `FsDiff` (world.ts); semantics in docs/FS_DIFF.md.
 *
 *   GET  /v1/fs_diff/:span_id           → FsDiff
 *   POST /v1/fs_diff/:span_id/apply     FsApplyRequest → FsApplyResponse
 *   POST /v1/fs_diff/:span_id/discard   (no body)      → FsDiscardResponse
 *
 * Errors use ErrorBody: 404 not_found (unknown span, span not isolated, or already
 * discarded), 400 bad_request (a path not in the diff; the message lists them). Applying is
 * itself the user's decision: no approval round-trip.
 */
import { z } from "zod";
import { SpanId, WorldId } from "./common.ts";
import { FsDiff } from "./world.ts";

export const FS_DIFF_ROUTES = {
  get: "/v1/fs_diff/:span_id",
  apply: "/v1/fs_diff/:span_id/apply",
  discard: "/v1/fs_diff/:span_id/discard",
} as const;

export const FsDiffParams = z.strictObject({ span_id: SpanId });
export type FsDiffParams = z.infer<typeof FsDiffParams>;

/** GET /v1/fs_diff/:span_id */
export const FsDiffResponse = FsDiff;
export type FsDiffResponse = z.infer<typeof FsDiffResponse>;

/**
 * A path exactly as the diff lists it: relative to the project, "/"-separated, directories
 * with a trailing "/" (which selects the directory and everything under it).
 */
export const FsDiffPath = z
  .string()
  .min(1)
  .refine((p) => !p.startsWith("/"), "diff paths are relative to the project (no leading /)")
  .refine((p) => !p.includes("\0"), "diff paths contain no NUL byte")
  .refine(
    (p) => p.split("/").every((seg, i, all) => (seg !== "" || i === all.length - 1) && seg !== "." && seg !== ".."),
    'diff paths have no empty, "." or ".." segments',
  );

/** POST /v1/fs_diff/:span_id/apply — no `paths`: apply everything. */
export const FsApplyRequest = z.strictObject({
  paths: z.array(FsDiffPath).min(1).optional(),
});
export type FsApplyRequest = z.infer<typeof FsApplyRequest>;

export const FsApplyResponse = z.strictObject({
  /** diff paths landed on the host project, sorted */
  applied: z.array(z.string()),
  /** ours: entries that cannot be recreated on the host (fifos, sockets, devices) */
  skipped: z.array(z.strictObject({ path: z.string(), reason: z.string() })),
  /**
   * ours (issue 18 faults): an earlier apply of this result was interrupted (the agent died
   * half way); `landed` are the diff paths it had landed. This apply finished the rest.
   */
  interrupted: z.strictObject({ landed: z.array(z.string()) }).optional(),
});
export type FsApplyResponse = z.infer<typeof FsApplyResponse>;

/** POST /v1/fs_diff/:span_id/discard */
export const FsDiscardResponse = z.strictObject({ discarded: z.literal(true) });
export type FsDiscardResponse = z.infer<typeof FsDiscardResponse>;

/**
 * `<overlay dir>/mount.json`, written by mountOverlay next to upper/ and work/ (ours, on disk
 * only): how the upper dir was produced, so the agent reads its whiteout/opaque markers right
 * even when the spawner's caller did not pass the strategy along.
 */
export const OverlayMountRecord = z.strictObject({
  strategy: z.enum(["overlay", "fuse"]),
  userxattr: z.boolean(),
});
export type OverlayMountRecord = z.infer<typeof OverlayMountRecord>;

/**
 * `<overlay dir>/result.json` (ours, on disk only): which span an isolated result belongs to
 * and which project it applies to; written once the isolated world is gone.
 */
export const IsolatedResultRecord = z.strictObject({
  span_id: SpanId,
  world_id: WorldId,
  project_dir: z.string().startsWith("/", "project_dir must be an absolute path"),
  /** Issue 13: the uid whose isolated execute this was; only it (or root) may read, apply, discard. */
  owner_uid: z.number().int().nonnegative().optional(),
});
export type IsolatedResultRecord = z.infer<typeof IsolatedResultRecord>;
