/**
 * The results of isolated executes, by span id: what the `/v1/fs_diff/:span_id` routes serve
 * (contract: src/contract/fsdiff.ts). After an isolated world is destroyed, its overlay dir
 * (`<base>/<world_id>/{upper,work,mount.json}`) stays until the user applies or discards it;
 * `register` adds `result.json` there (span id + project), so results survive an agent restart
 * (`lookup` falls back to scanning the base dir).
 *
 * Errors are the API's `ApiError` (`not_found`, `bad_request`, `internal`), which the shared
 * router already turns into `ErrorBody` + `httpStatusFor(code)`.
 */
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { ApiError } from "../../src/api/service.ts";
import { type FsApplyResponse, type FsDiscardResponse, IsolatedResultRecord } from "../../src/contract/fsdiff.ts";
import type { FsDiff } from "../../src/contract/world.ts";
import { ApplyError, applyDiff, discardOverlay, type ApplyJournal } from "./apply.ts";
import { overlayDiff, type OverlayDiffOptions } from "./fsdiff.ts";
import { OVERLAY_BASE } from "./overlay.ts";

export const RESULT_RECORD = "result.json";
/** Issue 18 faults: an apply in progress (JSON lines {tmp} / {landed}); gone once it finished. */
export const APPLY_JOURNAL = "apply.journal";

/** What an interrupted apply's journal says: its temp files and the paths it had landed. */
function readJournal(path: string, project?: string): { tmps: string[]; landed: string[] } | null {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return null;
  }
  const tmps = new Set<string>();
  const landed: string[] = [];
  for (const line of text.split("\n")) {
    try {
      const j = JSON.parse(line) as { tmp?: string; path?: string; landed?: string };
      if (typeof j.tmp === "string" && /\/\.substrate-apply-[^/]+$/.test(j.tmp)) {
        tmps.add(j.tmp);
        // Killed between the rename and the journal's `landed` line: the temp file is gone
        // and the path is in place, so it landed (the caller must be told).
        if (j.path && project && !existsSync(j.tmp) && existsSync(join(project, j.path))) landed.push(j.path);
      }
      if (typeof j.landed === "string") landed.push(j.landed);
    } catch {} // a torn last line: the process died in that write
  }
  if (!tmps.size && !landed.length) return null; // an apply that failed before touching anything
  return { tmps: [...tmps], landed: [...new Set(landed)].sort() };
}

interface Entry {
  dir: string;
  rec: IsolatedResultRecord;
  /** The upper dir is static once the world is gone: the diff is computed once. */
  diff?: Promise<FsDiff>;
}

export class IsolatedResults {
  private readonly byspan = new Map<string, Entry>();

  constructor(
    private readonly baseDir: string = OVERLAY_BASE,
    private readonly diffOptions: OverlayDiffOptions = {},
  ) {}

  /**
   * Call after the isolated world is destroyed (nothing mounted, no process writing the upper
   * dir). `dir` is prepareOverlayDirs(...).dir.
   */
  register(dir: string, rec: IsolatedResultRecord): void {
    const r = IsolatedResultRecord.parse(rec);
    writeFileSync(join(dir, RESULT_RECORD), `${JSON.stringify(r)}\n`);
    this.byspan.set(r.span_id, { dir, rec: r });
  }

  private lookup(spanId: string, uid?: number): Entry {
    let e = this.byspan.get(spanId);
    if (e === undefined) {
      // After an agent restart: find the dir whose result.json names this span.
      for (const name of safeReaddir(this.baseDir)) {
        const dir = join(this.baseDir, name);
        const rec = readRecord(dir);
        if (rec !== null) this.byspan.set(rec.span_id, { dir, rec });
      }
      e = this.byspan.get(spanId);
    }
    // Issue 13: another uid's result does not exist for this caller (same answer as unknown).
    const foreign = e !== undefined && uid !== undefined && uid !== 0 && e.rec.owner_uid !== undefined && e.rec.owner_uid !== uid;
    if (e === undefined || foreign || !existsSync(join(e.dir, "upper"))) {
      if (!foreign) this.byspan.delete(spanId);
      throw new ApiError(
        "not_found",
        `no isolated result for span ${spanId}`,
        "only isolated executes have a diff, and a discarded result is gone; see `substrate trace` for the span",
      );
    }
    return e;
  }

  /** GET /v1/fs_diff/:span_id */
  async diff(spanId: string, uid?: number): Promise<FsDiff> {
    const e = this.lookup(spanId, uid);
    e.diff ??= overlayDiff(join(e.dir, "upper"), e.rec.project_dir, this.diffOptions);
    return e.diff;
  }

  /** POST /v1/fs_diff/:span_id/apply */
  async apply(spanId: string, paths?: string[], uid?: number): Promise<FsApplyResponse> {
    const e = this.lookup(spanId, uid);
    // Issue 18 faults (RELIABILITY): an apply journal in the result's dir. Every path lands
    // atomically (temp file + rename); the journal names each temp file before it exists and
    // each path once it landed, so an apply killed half way is finished by the next one (which
    // removes the dead one's temp files and reports what it had landed) — the project is
    // between only until then, and the answer says exactly which paths had landed.
    const journalPath = join(e.dir, APPLY_JOURNAL);
    const interrupted = readJournal(journalPath, e.rec.project_dir);
    for (const t of interrupted?.tmps ?? []) rmSync(t, { force: true });
    const fd = openSync(journalPath, "a", 0o600);
    const journal: ApplyJournal = {
      tmp: (abs, path) => writeSync(fd, `${JSON.stringify({ tmp: abs, ...(path ? { path } : {}) })}\n`),
      landed: (path) => writeSync(fd, `${JSON.stringify({ landed: path })}\n`),
    };
    try {
      const r = await applyDiff(join(e.dir, "upper"), e.rec.project_dir, paths, { journal });
      e.diff = undefined; // the project changed: a later GET recomputes against it
      closeSync(fd);
      rmSync(journalPath, { force: true });
      return interrupted ? { ...r, interrupted: { landed: interrupted.landed } } : r;
    } catch (err) {
      if (err instanceof ApplyError) {
        throw new ApiError(
          err.code === "unknown_paths" ? "bad_request" : "internal",
          err.message,
          err.code === "unknown_paths" ? "GET the diff and use its paths (directories end with /)" : undefined,
        );
      }
      throw err;
    } finally {
      try {
        closeSync(fd);
      } catch {}
      if (readJournal(journalPath) === null) rmSync(journalPath, { force: true });
    }
  }

  /** POST /v1/fs_diff/:span_id/discard */
  async discard(spanId: string, uid?: number): Promise<FsDiscardResponse> {
    const e = this.lookup(spanId, uid);
    await discardOverlay(e.dir, this.baseDir);
    this.byspan.delete(spanId);
    return { discarded: true };
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function readRecord(dir: string): IsolatedResultRecord | null {
  try {
    const r = IsolatedResultRecord.safeParse(JSON.parse(readFileSync(join(dir, RESULT_RECORD), "utf8")));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}
