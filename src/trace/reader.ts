/**
 * Reading spans back: across rotated files (oldest first), with filters, and `--follow`.
 * Lines that do not parse or validate (a foreign writer, a truncated disk) are skipped and
 * counted, never fatal: the trace is evidence, one bad line must not hide the others.
 */
import * as fs from "node:fs";
import { Span } from "../contract/span.ts";
import { traceFilePath } from "./writer.ts";

export interface SpanFilter {
  /** trace file (default traceFilePath()); rotated `.1` … `.N` are read too */
  path?: string;
  span_id?: string;
  /** only the last N matching lines */
  last?: number;
  agent_id?: string;
  /** glob over the command line (`*`, `?`); without wildcards a substring match */
  cmd?: string;
  event_type?: Span["event_type"] | Span["event_type"][];
  /** spans with ts >= since (ISO string or Date) */
  since?: string | Date;
  /** spans whose parent_span is this id */
  parent_span?: string;
  /** any other condition (ANDed with the rest) */
  where?: (s: Span) => boolean;
}

export interface ReadStats {
  lines: number;
  invalid: number;
  files: string[];
}

/** The trace file and its rotated predecessors, oldest first. */
export function traceFiles(path = traceFilePath()): string[] {
  const rotated: string[] = [];
  // Rotated files are contiguous (`.1` … `.k`, made only under the rotation lock).
  for (let i = 1; fs.existsSync(`${path}.${i}`); i++) rotated.push(`${path}.${i}`);
  const files = rotated.reverse();
  if (fs.existsSync(path)) files.push(path);
  return files;
}

/** Glob (`*`, `?`) or plain substring → predicate over the command line. */
export function cmdMatcher(pattern: string): (cmd: string) => boolean {
  if (!/[*?]/.test(pattern)) return (cmd) => cmd.includes(pattern);
  const re = new RegExp(
    `^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`,
    "s",
  );
  return (cmd) => re.test(cmd);
}

export function spanMatches(f: SpanFilter): (s: Span) => boolean {
  const types = f.event_type === undefined ? undefined : new Set([f.event_type].flat());
  const cmdOk = f.cmd === undefined ? undefined : cmdMatcher(f.cmd);
  const since = f.since === undefined ? undefined : new Date(f.since).getTime();
  return (s) =>
    (f.span_id === undefined || s.span_id === f.span_id) &&
    (f.agent_id === undefined || s.agent_id === f.agent_id) &&
    (f.parent_span === undefined || s.parent_span === f.parent_span) &&
    (types === undefined || types.has(s.event_type)) &&
    (cmdOk === undefined || (s.cmd !== undefined && cmdOk(s.cmd))) &&
    (since === undefined || Date.parse(s.ts) >= since) &&
    (f.where === undefined || f.where(s));
}

/** Parse one line; undefined when it is not a valid span. */
export function parseSpanLine(line: string): Span | undefined {
  if (line.trim() === "") return undefined;
  try {
    const r = Span.safeParse(JSON.parse(line));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

/** Every valid line of one file, streamed (files can be 100 MiB). */
export async function* spansOfFile(file: string, stats?: ReadStats): AsyncGenerator<Span> {
  let rest = "";
  const decoder = new TextDecoder();
  let stream: ReadableStream<Uint8Array>;
  try {
    stream = Bun.file(file).stream();
  } catch {
    return;
  }
  const handle = (line: string): Span | undefined => {
    if (line === "") return undefined;
    if (stats) stats.lines++;
    const s = parseSpanLine(line);
    if (!s && stats) stats.invalid++;
    return s;
  };
  try {
    for await (const chunk of stream) {
      rest += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = rest.indexOf("\n")) >= 0) {
        const s = handle(rest.slice(0, nl));
        rest = rest.slice(nl + 1);
        if (s) yield s;
      }
    }
  } catch (e) {
    // the file was rotated away and dropped mid-read: what we read is still good
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  rest += decoder.decode();
  // A final line without "\n" is a write still in flight or a torn tail: not a span yet.
  if (rest !== "" && stats) {
    stats.lines++;
    stats.invalid++;
  }
}

/** Spans matching `filter`, in file order (oldest first). */
export async function readSpans(filter: SpanFilter = {}, stats?: ReadStats): Promise<Span[]> {
  const files = traceFiles(filter.path);
  if (stats) stats.files = files;
  const ok = spanMatches(filter);
  const out: Span[] = [];
  for (const f of files) {
    for await (const s of spansOfFile(f, stats)) {
      if (!ok(s)) continue;
      out.push(s);
      // keep memory bounded for --last N over huge traces
      if (filter.last !== undefined && out.length > filter.last * 2 + 1024) out.splice(0, out.length - filter.last);
    }
  }
  return filter.last !== undefined ? out.slice(Math.max(0, out.length - filter.last)) : out;
}

/** All lines of one span id (command_start then command_complete, usually). */
export async function spanEvents(id: string, path?: string): Promise<Span[]> {
  return readSpans({ span_id: id, path });
}

/**
 * The span with this id: its `command_complete` line when there is one (it carries exit,
 * fs_diff and replay context), else its last line. undefined when unknown.
 */
export async function findSpan(id: string, path?: string): Promise<Span | undefined> {
  const ev = await spanEvents(id, path);
  return ev.findLast((s) => s.event_type === "command_complete") ?? ev.at(-1);
}

/**
 * Tail the trace: yields matching spans appended after the call (and, with `fromStart`, the
 * existing ones first). Follows rotation by noticing the inode change. Polls (fs.watch
 * misses appends from other mount namespaces and on some filesystems).
 */
export async function* followSpans(
  filter: SpanFilter = {},
  opts: { intervalMs?: number; signal?: AbortSignal } = {},
): AsyncGenerator<Span> {
  const path = filter.path ?? traceFilePath();
  const ok = spanMatches({ ...filter, last: undefined });
  const interval = opts.intervalMs ?? 200;
  let ino = -1;
  let offset = 0;
  try {
    const st = fs.statSync(path);
    ino = st.ino;
    offset = st.size;
  } catch {
    /* not yet created */
  }
  let rest = "";
  while (!opts.signal?.aborted) {
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(path);
    } catch {
      st = undefined;
    }
    if (st && (st.ino !== ino || st.size < offset)) {
      // Rotated (maybe several times since the last poll) or truncated. Find where our
      // inode went (`.k`), drain its tail, then the files rotated after it (`.k-1` … `.1`)
      // whole, then start the new current file from 0.
      if (ino !== -1 && st.ino !== ino) {
        const rotated: { file: string; st: fs.Stats }[] = [];
        for (let i = 1; ; i++) {
          const f = `${path}.${i}`;
          let rs: fs.Stats;
          try {
            rs = fs.statSync(f);
          } catch {
            break;
          }
          rotated.push({ file: f, st: rs });
          if (rs.ino === ino) break;
        }
        const k = rotated.findIndex((r) => r.st.ino === ino);
        if (k >= 0) {
          const mine = rotated[k]!;
          if (mine.st.size > offset) for (const s of readRange(mine.file, offset, mine.st.size, rest)) if (ok(s)) yield s;
          for (let j = k - 1; j >= 0; j--) for (const s of readRange(rotated[j]!.file, 0, rotated[j]!.st.size, "")) if (ok(s)) yield s;
        }
      }
      ino = st.ino;
      offset = 0;
      rest = "";
    }
    if (st && st.size > offset) {
      const box = { rest };
      for (const s of readRange(path, offset, st.size, rest, box)) if (ok(s)) yield s;
      rest = box.rest;
      offset = st.size;
    }
    await Bun.sleep(interval);
  }
}

function* readRange(file: string, from: number, to: number, carry: string, box?: { rest: string }): Generator<Span> {
  const fd = fs.openSync(file, "r");
  try {
    const buf = Buffer.alloc(to - from);
    fs.readSync(fd, buf, 0, buf.length, from);
    const text = carry + buf.toString("utf8");
    const lines = text.split("\n");
    const tail = lines.pop() ?? "";
    if (box) box.rest = tail;
    for (const l of lines) {
      const s = parseSpanLine(l);
      if (s) yield s;
    }
  } finally {
    fs.closeSync(fd);
  }
}
