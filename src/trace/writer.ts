/**
 * Append-only JSONL writer for trace spans, safe under concurrency from many processes.
 *
 * Why one write(2) per line with O_APPEND: on Linux a write to a regular file opened with
 * O_APPEND positions at EOF and copies the data while holding the inode lock, so two
 * writers' lines never interleave or overwrite each other, whatever their size (ext4, xfs,
 * btrfs, tmpfs, overlayfs; not NFS, where O_APPEND is emulated client-side). Bun's
 * `fs.writeSync` issues exactly one write(2) for a buffer (checked with strace). A short
 * write only happens on ENOSPC/EFBIG; we then report an error instead of writing the rest,
 * which could land after another process's line and tear ours.
 *
 * fsync policy: off by default. A line is in the page cache when appendSpan returns, so it
 * survives the process crashing or being killed, not a power loss. `fsync: true` (or
 * SUBSTRATE_TRACE_FSYNC=1) adds fdatasync(2) per line (~ms each on disk) for audit setups.
 *
 * Rotation (default at 100 MiB, keep 5): the file is renamed to `.1` (older ones shift to
 * `.2` … `.keep`, the oldest is dropped). Only rotation takes a lock (`<file>.lock`, created
 * with O_EXCL); writers never wait. The rename protocol loses no line:
 *  - a writer that opened the file just before a rename writes into the same inode, now `.1`,
 *    which readers still read (rename keeps the inode; nothing is copied or truncated);
 *  - two processes crossing the limit at once: the second finds the lock taken and skips, or
 *    takes it after the first and re-checks the size of the *new* file, which is small;
 *  - a rotator that dies holding the lock: the lock records its pid; a lock whose pid is gone
 *    (or that is older than 60 s) is removed by the next rotator.
 * The file is opened per line (open+write+close ≈ 15 µs), so no long-lived fd can keep
 * writing into a file that has been shifted away and dropped.
 */
import * as fs from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { Span, type SpanInput } from "../contract/span.ts";
import { redactCmd } from "./redact.ts";
import { pathsOf } from "../settings.ts";

const { O_RDWR, O_APPEND, O_CREAT } = fs.constants;

export const DEFAULT_MAX_BYTES = 100 * 1024 * 1024;
export const DEFAULT_KEEP = 5;
const STALE_LOCK_MS = 60_000;

/** `SUBSTRATE_TRACE`, else `trace.jsonl` under `~/.substrate` (SUBSTRATE_HOME honoured: src/settings.ts). */
export function traceFilePath(env: Record<string, string | undefined> = process.env): string {
  return pathsOf(env).trace;
}

export interface TraceWriterOptions {
  /** default: traceFilePath() */
  path?: string;
  /** rotate once the file reaches this size; default 100 MiB (env SUBSTRATE_TRACE_MAX_BYTES) */
  maxBytes?: number;
  /** rotated files kept (`.1` … `.keep`); default 5 (env SUBSTRATE_TRACE_KEEP) */
  keep?: number;
  /** fdatasync each line; default false (env SUBSTRATE_TRACE_FSYNC=1) */
  fsync?: boolean;
}

export class TraceWriteError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`cannot write trace ${path}: ${message}`);
    this.name = "TraceWriteError";
  }
}

const envInt = (v: string | undefined): number | undefined => {
  const n = v === undefined ? NaN : Number(v);
  return Number.isFinite(n) && n > 0 ? Math.floor(n) : undefined;
};

/** Validate, redact and serialise one span: the exact bytes that go into the file. */
export function serializeSpan(input: SpanInput): { span: Span; line: Buffer } {
  const redacted: SpanInput = { ...input };
  if (redacted.cmd !== undefined) redacted.cmd = redactCmd(redacted.cmd);
  if (redacted.reason !== undefined) redacted.reason = redactCmd(redacted.reason);
  const span = Span.parse(redacted);
  // JSON.stringify escapes every control character, so the line holds exactly one "\n".
  return { span, line: Buffer.from(`${JSON.stringify(span)}\n`, "utf8") };
}

export class TraceWriter {
  readonly path: string;
  readonly maxBytes: number;
  readonly keep: number;
  readonly fsync: boolean;
  private dirReady = false;

  constructor(opts: TraceWriterOptions = {}) {
    this.path = opts.path ?? traceFilePath();
    this.maxBytes = opts.maxBytes ?? envInt(process.env.SUBSTRATE_TRACE_MAX_BYTES) ?? DEFAULT_MAX_BYTES;
    this.keep = Math.max(1, opts.keep ?? envInt(process.env.SUBSTRATE_TRACE_KEEP) ?? DEFAULT_KEEP);
    this.fsync = opts.fsync ?? process.env.SUBSTRATE_TRACE_FSYNC === "1";
  }

  /** Append one span (validated, redacted). Returns what was written. */
  write(input: SpanInput): Span {
    const { span, line } = serializeSpan(input);
    this.writeLine(line);
    return span;
  }

  /** One open, ONE write(2), close. See the file comment for why. */
  writeLine(line: Buffer): void {
    if (!this.dirReady) {
      fs.mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
      this.dirReady = true;
    }
    let fd: number;
    try {
      fd = fs.openSync(this.path, O_RDWR | O_APPEND | O_CREAT, 0o600); // RDWR: a torn tail can be checked (issue 18)
    } catch (e) {
      throw new TraceWriteError(this.path, (e as Error).message);
    }
    let size: number;
    let before = -1;
    try {
      before = fs.fstatSync(fd).size;
      const n = fs.writeSync(fd, line);
      if (n !== line.length) throw new TraceWriteError(this.path, `short write (${n} of ${line.length} bytes; disk full?)`);
      if (this.fsync) fs.fdatasyncSync(fd);
      size = fs.fstatSync(fd).size;
    } catch (e) {
      // Issue 18 faults (RELIABILITY): a write cut short (ENOSPC) must not leave a torn line
      // that the next span would be glued onto: cut our fragment off again when it is still the
      // file's tail, else end it with a newline so only this span is lost.
      if (before >= 0) {
        try {
          const now = fs.fstatSync(fd).size;
          if (now > before && now - before < line.length) {
            const tail = Buffer.alloc(now - before);
            fs.readSync(fd, tail, 0, tail.length, before);
            if (line.subarray(0, tail.length).equals(tail)) fs.ftruncateSync(fd, before);
            else fs.writeSync(fd, "\n");
          }
        } catch {}
      }
      throw e;
    } finally {
      fs.closeSync(fd);
    }
    if (size >= this.maxBytes) this.rotate();
  }

  /** Rotate if (still) over the limit. Never blocks: if another process rotates, we skip. */
  rotate(): boolean {
    const lock = `${this.path}.lock`;
    if (!this.acquire(lock)) return false;
    try {
      let st: fs.Stats;
      try {
        st = fs.statSync(this.path);
      } catch {
        return false;
      }
      if (st.size < this.maxBytes) return false; // someone rotated before we got the lock
      if (this.fsync) fsyncPath(this.path);
      // Rotated files are contiguous (.1 … .k, only ever made under this lock): find k, so
      // a large keep costs nothing, then shift from the top, dropping what falls past keep.
      let top = 0;
      while (top < this.keep && fs.existsSync(`${this.path}.${top + 1}`)) top++;
      if (top === this.keep) top = this.keep - 1; // .keep is overwritten by .keep-1: dropped
      for (let i = top; i >= 1; i--) renameIfExists(`${this.path}.${i}`, `${this.path}.${i + 1}`);
      fs.renameSync(this.path, `${this.path}.1`);
      if (this.fsync) fsyncPath(dirname(this.path));
      return true;
    } finally {
      try {
        fs.unlinkSync(lock);
      } catch {
        /* already gone */
      }
    }
  }

  private acquire(lock: string): boolean {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = fs.openSync(lock, "wx", 0o600);
        fs.writeSync(fd, `${process.pid}\n`);
        fs.closeSync(fd);
        return true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") return false;
        if (!isStaleLock(lock)) return false;
        try {
          fs.unlinkSync(lock);
        } catch {
          return false;
        }
      }
    }
    return false;
  }
}

function isStaleLock(lock: string): boolean {
  try {
    const st = fs.statSync(lock);
    if (Date.now() - st.mtimeMs > STALE_LOCK_MS) return true;
    const pid = Number(fs.readFileSync(lock, "utf8").trim());
    if (!Number.isInteger(pid) || pid <= 0) return false; // being written right now
    try {
      process.kill(pid, 0);
      return false;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === "ESRCH";
    }
  } catch {
    return false;
  }
}

function renameIfExists(from: string, to: string): void {
  try {
    fs.renameSync(from, to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
}

function fsyncPath(p: string): void {
  const fd = fs.openSync(p, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

const writers = new Map<string, TraceWriter>();

/**
 * Append one span to the trace (default `traceFilePath()`). Validates with the zod schema
 * (throws a ZodError on a bad span: a caller bug) and redacts the command line first.
 */
export async function appendSpan(span: SpanInput, opts: TraceWriterOptions = {}): Promise<void> {
  appendSpanSync(span, opts);
}

/** Same as appendSpan, synchronous (for exit paths where no await is possible). */
export function appendSpanSync(span: SpanInput, opts: TraceWriterOptions = {}): Span {
  const path = opts.path ?? traceFilePath();
  const key = `${path}\0${opts.maxBytes ?? ""}\0${opts.keep ?? ""}\0${opts.fsync ?? ""}`;
  let w = writers.get(key);
  if (!w) {
    w = new TraceWriter({ ...opts, path });
    writers.set(key, w);
  }
  return w.write(span);
}
