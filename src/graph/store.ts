/**
 * The span graph (spec section 9) in bun:sqlite instead of Kuzu: no native add-on, one file
 * under `~/.substrate/graph/`. The spec's node and rel tables map one to one:
 *
 *   Span(id, cmd, exit, …)   File(path, hash)   Agent(id, type)   Dir(path)
 *   WROTE(Span→File, kind, bytes)  READ(Span→File)  EXECUTED_BY(Span→Agent)  PARENT_OF(Span→Span)
 *
 * `file.dir` links a File to its Dir. Ingestion is incremental from trace.jsonl (the source
 * of truth): per trace file we remember (inode, offset, head hash) and read only new bytes,
 * so `sync()` is cheap when nothing changed and survives rotation (a rotated file keeps its
 * inode). Re-ingesting a span is a no-op (primary keys), so two syncs racing are harmless;
 * WAL mode lets queries run while another process ingests.
 */
import { Database, type Statement } from "bun:sqlite";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import type { Span } from "../contract/index.ts";
import { parseSpanLine, traceFiles } from "../trace/reader.ts";
import { PrivacyFilter, type PrivacyConfig } from "./privacy.ts";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS span (
  id TEXT PRIMARY KEY, cmd TEXT, exit INTEGER, ts TEXT, event_type TEXT,
  session_id TEXT, agent_id TEXT, cwd TEXT, world_id TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS file (path TEXT PRIMARY KEY, hash TEXT, dir TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dir (path TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agent (id TEXT PRIMARY KEY, type TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS wrote (
  span_id TEXT NOT NULL, file_path TEXT NOT NULL, kind TEXT NOT NULL, bytes INTEGER,
  PRIMARY KEY (span_id, file_path)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS wrote_by_file ON wrote (file_path, span_id);
CREATE TABLE IF NOT EXISTS read (
  span_id TEXT NOT NULL, file_path TEXT NOT NULL, PRIMARY KEY (span_id, file_path)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS read_by_file ON read (file_path, span_id);
CREATE TABLE IF NOT EXISTS executed_by (
  span_id TEXT NOT NULL, agent_id TEXT NOT NULL, PRIMARY KEY (span_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS executed_by_agent ON executed_by (agent_id, span_id);
CREATE TABLE IF NOT EXISTS parent_of (
  parent TEXT NOT NULL, child TEXT NOT NULL, PRIMARY KEY (parent, child)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS parent_of_child ON parent_of (child);
CREATE TABLE IF NOT EXISTS ingest_state (
  ino INTEGER PRIMARY KEY, off INTEGER NOT NULL, head TEXT NOT NULL, path TEXT
);
`;

/** Events that stand for a command (become Span nodes). */
const NODE_EVENTS = new Set<Span["event_type"]>([
  "command_start",
  "command_complete",
  "builtin_command",
  "policy_denied",
  "replay",
]);

export interface ChangedFile {
  path: string;
  kind: "write" | "mod" | "delete";
  hash: string | null;
  /** the span that wrote it (the asked span or one of its descendants) */
  span_id: string;
}
export interface Writer {
  span_id: string;
  ts: string;
  cmd: string | null;
  agent_id: string;
  exit: number | null;
  path: string;
  kind: string;
}
export interface AgentSummary {
  agent_id: string;
  spans: number;
  failures: number;
  first_ts: string | null;
  last_ts: string | null;
  files_written: number;
  recent: { span_id: string; ts: string; cmd: string | null; exit: number | null }[];
  top_files: { path: string; writes: number }[];
}
export interface SyncStats {
  files: number;
  bytes: number;
  spans: number;
  invalid: number;
}

export class SpanGraph {
  readonly db: Database;
  readonly privacy: PrivacyFilter;
  private st!: {
    spanInsert: Statement;
    spanComplete: Statement;
    file: Statement;
    dir: Statement;
    agent: Statement;
    wrote: Statement;
    read: Statement;
    executed: Statement;
    parent: Statement;
  };

  /** Open (creating) `<dir>/graph.db`. */
  constructor(
    readonly dir: string,
    privacy: PrivacyConfig,
    home: string,
  ) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.db = new Database(join(dir, "graph.db"), { create: true });
    this.db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;");
    this.db.exec(SCHEMA);
    this.privacy = new PrivacyFilter(privacy, home);
    this.prepare();
  }

  private prepare(): void {
    const q = (s: string) => this.db.prepare(s);
    this.st = {
      spanInsert: q(
        `INSERT OR IGNORE INTO span (id, cmd, exit, ts, event_type, session_id, agent_id, cwd, world_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      // a completion overrides what the start line said
      spanComplete: q(
        `INSERT INTO span (id, cmd, exit, ts, event_type, session_id, agent_id, cwd, world_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET cmd = excluded.cmd, exit = excluded.exit, event_type = excluded.event_type,
           world_id = coalesce(excluded.world_id, span.world_id)`,
      ),
      file: q(`INSERT INTO file (path, hash, dir) VALUES (?, ?, ?)
               ON CONFLICT (path) DO UPDATE SET hash = coalesce(excluded.hash, file.hash)`),
      dir: q("INSERT OR IGNORE INTO dir (path) VALUES (?)"),
      agent: q("INSERT OR IGNORE INTO agent (id, type) VALUES (?, ?)"),
      wrote: q("INSERT OR REPLACE INTO wrote (span_id, file_path, kind, bytes) VALUES (?, ?, ?, ?)"),
      read: q("INSERT OR IGNORE INTO read (span_id, file_path) VALUES (?, ?)"),
      executed: q("INSERT OR IGNORE INTO executed_by (span_id, agent_id) VALUES (?, ?)"),
      parent: q("INSERT OR IGNORE INTO parent_of (parent, child) VALUES (?, ?)"),
    };
  }

  close(): void {
    this.db.close();
  }

  /** Ingest spans (one transaction). Privacy filters decide which files become nodes. */
  ingest(spans: Iterable<Span>): number {
    let n = 0;
    const tx = this.db.transaction((list: Iterable<Span>) => {
      for (const s of list) if (this.ingestOne(s)) n++;
    });
    tx(spans);
    return n;
  }

  private ingestOne(s: Span): boolean {
    if (!NODE_EVENTS.has(s.event_type)) return false;
    const row = [s.span_id, s.cmd ?? null, s.exit ?? null, s.ts, s.event_type, s.session_id, s.agent_id, s.cwd ?? null, s.world_id ?? null];
    (s.event_type === "command_start" ? this.st.spanInsert : this.st.spanComplete).run(...row);
    this.st.agent.run(s.agent_id, s.agent_id === "human" ? "human" : "agent");
    this.st.executed.run(s.span_id, s.agent_id);
    if (s.parent_span) this.st.parent.run(s.parent_span, s.span_id);
    if (s.replay_of) this.st.parent.run(s.replay_of, s.span_id);
    const base = s.replay_context?.cwd ?? s.cwd;
    const d = s.fs_diff;
    if (d) {
      for (const p of d.writes) this.fileEdge(s.span_id, base, p, "write");
      for (const p of d.mods) this.fileEdge(s.span_id, base, p, "mod");
      for (const p of d.deletes) this.fileEdge(s.span_id, base, p, "delete");
    }
    // READ edges come from scopes of the form `fs.read:<path>` (exact files the world saw read)
    for (const sc of s.scopes_used ?? []) {
      if (!sc.startsWith("fs.read:")) continue;
      const abs = absolutize(base, sc.slice("fs.read:".length));
      if (abs && this.privacy.shouldIndex(abs)) {
        this.fileNode(abs, null);
        this.st.read.run(s.span_id, abs);
      }
    }
    return true;
  }

  private fileEdge(span: string, base: string | undefined, p: string, kind: ChangedFile["kind"]): void {
    const abs = absolutize(base, p);
    if (!abs || !this.privacy.shouldIndex(abs)) return;
    let hash: string | null = null;
    let bytes: number | null = null;
    if (kind !== "delete") {
      try {
        const st = fs.statSync(abs);
        if (st.isFile()) {
          bytes = st.size;
          // opt-in hashing; the world may have been isolated, so the file may not exist here
          if (this.privacy.shouldHash(abs) && st.size <= 16 * 1024 * 1024)
            hash = `sha256:${createHash("sha256").update(fs.readFileSync(abs)).digest("hex")}`;
        }
      } catch {
        /* not on this host (isolated world) */
      }
    }
    this.fileNode(abs, hash);
    this.st.wrote.run(span, abs, kind, bytes);
  }

  private fileNode(abs: string, hash: string | null): void {
    const dir = dirname(abs);
    this.st.dir.run(dir);
    this.st.file.run(abs, hash, dir);
  }

  /**
   * Ingest what was appended to the trace since the last sync (all rotated files too).
   * Returns counts. Safe to call often: unchanged files cost one stat each.
   */
  sync(tracePath: string): SyncStats {
    const stats: SyncStats = { files: 0, bytes: 0, spans: 0, invalid: 0 };
    const getState = this.db.prepare("SELECT off, head FROM ingest_state WHERE ino = ?");
    const setState = this.db.prepare("INSERT OR REPLACE INTO ingest_state (ino, off, head, path) VALUES (?, ?, ?, ?)");
    const seen = new Set<number>();
    for (const file of traceFiles(tracePath)) {
      let fd: number;
      try {
        fd = fs.openSync(file, "r");
      } catch {
        continue; // rotated away between listing and opening
      }
      try {
        const st = fs.fstatSync(fd);
        seen.add(st.ino);
        const head = headHash(fd);
        const prev = getState.get(st.ino) as { off: number; head: string } | null;
        // an inode number can be reused by a new file: the head hash tells them apart
        let off = prev && prev.head === head ? prev.off : 0;
        if (st.size <= off) continue;
        stats.files++;
        const CHUNK = 8 * 1024 * 1024;
        let carry = Buffer.alloc(0);
        let pos = off;
        while (pos < st.size) {
          const buf = Buffer.alloc(Math.min(CHUNK, st.size - pos));
          const n = fs.readSync(fd, buf, 0, buf.length, pos);
          if (n <= 0) break;
          pos += n;
          const data = carry.length ? Buffer.concat([carry, buf.subarray(0, n)]) : buf.subarray(0, n);
          const last = data.lastIndexOf(0x0a);
          if (last < 0) {
            carry = Buffer.from(data);
            continue;
          }
          const spans: Span[] = [];
          for (const line of data.subarray(0, last).toString("utf8").split("\n")) {
            if (line === "") continue;
            const s = parseSpanLine(line);
            if (s) spans.push(s);
            else stats.invalid++;
          }
          carry = Buffer.from(data.subarray(last + 1));
          stats.spans += this.ingest(spans);
          off = pos - carry.length;
          stats.bytes += last + 1;
          setState.run(st.ino, off, head, file);
        }
      } finally {
        fs.closeSync(fd);
      }
    }
    // forget files that rotated out of existence
    const all = this.db.prepare("SELECT ino FROM ingest_state").all() as { ino: number }[];
    const del = this.db.prepare("DELETE FROM ingest_state WHERE ino = ?");
    for (const { ino } of all) if (!seen.has(ino)) del.run(ino);
    return stats;
  }

  /** `graph what-changed <span>`: files the span (and its descendant spans) wrote, modified or deleted. */
  whatChanged(spanId: string): ChangedFile[] {
    return this.db
      .prepare(
        `WITH RECURSIVE tree(id, depth) AS (
           SELECT ?, 0
           UNION SELECT p.child, tree.depth + 1 FROM parent_of p JOIN tree ON p.parent = tree.id WHERE tree.depth < 32
         )
         SELECT w.file_path AS path, w.kind AS kind, f.hash AS hash, w.span_id AS span_id
         FROM tree JOIN wrote w ON w.span_id = tree.id JOIN file f ON f.path = w.file_path
         ORDER BY w.file_path`,
      )
      .all(spanId) as ChangedFile[];
  }

  /** `graph who-wrote <path>`: spans that wrote the file (or anything under the directory), newest first. */
  whoWrote(path: string, limit = 100): Writer[] {
    const p = path.replace(/\/+$/, "") || "/";
    return this.db
      .prepare(
        `SELECT w.span_id AS span_id, s.ts AS ts, s.cmd AS cmd, s.agent_id AS agent_id, s.exit AS exit,
                w.file_path AS path, w.kind AS kind
         FROM wrote w JOIN span s ON s.id = w.span_id
         WHERE w.file_path = ?1 OR (w.file_path >= ?2 AND w.file_path < ?3)
         ORDER BY s.ts DESC, w.span_id DESC LIMIT ?4`,
      )
      .all(p, `${p === "/" ? "" : p}/`, `${p === "/" ? "" : p}0`, limit) as Writer[];
  }

  /** `graph agent <id>`: what an agent did. undefined when the agent is unknown. */
  agent(id: string, recent = 20): AgentSummary | undefined {
    const head = this.db
      .prepare(
        `SELECT count(*) AS spans, sum(CASE WHEN s.exit IS NOT NULL AND s.exit != 0 THEN 1 ELSE 0 END) AS failures,
                min(s.ts) AS first_ts, max(s.ts) AS last_ts
         FROM executed_by e JOIN span s ON s.id = e.span_id WHERE e.agent_id = ?`,
      )
      .get(id) as { spans: number; failures: number | null; first_ts: string | null; last_ts: string | null };
    if (!head || head.spans === 0) return undefined;
    const recentRows = this.db
      .prepare(
        `SELECT s.id AS span_id, s.ts AS ts, s.cmd AS cmd, s.exit AS exit
         FROM executed_by e JOIN span s ON s.id = e.span_id WHERE e.agent_id = ?
         ORDER BY e.span_id DESC LIMIT ?`,
      )
      .all(id, recent) as AgentSummary["recent"];
    const files = this.db
      .prepare(
        `SELECT w.file_path AS path, count(*) AS writes
         FROM executed_by e JOIN wrote w ON w.span_id = e.span_id WHERE e.agent_id = ?
         GROUP BY w.file_path ORDER BY writes DESC, path LIMIT 10`,
      )
      .all(id) as AgentSummary["top_files"];
    const distinct = this.db
      .prepare(
        `SELECT count(DISTINCT w.file_path) AS n FROM executed_by e JOIN wrote w ON w.span_id = e.span_id WHERE e.agent_id = ?`,
      )
      .get(id) as { n: number };
    return {
      agent_id: id,
      spans: head.spans,
      failures: head.failures ?? 0,
      first_ts: head.first_ts,
      last_ts: head.last_ts,
      files_written: distinct.n,
      recent: recentRows,
      top_files: files,
    };
  }

  counts(): Record<string, number> {
    const c = (t: string) => (this.db.prepare(`SELECT count(*) AS n FROM ${t}`).get() as { n: number }).n;
    return {
      spans: c("span"),
      files: c("file"),
      dirs: c("dir"),
      agents: c("agent"),
      wrote: c("wrote"),
      read: c("read"),
      executed_by: c("executed_by"),
      parent_of: c("parent_of"),
    };
  }
}

function absolutize(base: string | undefined, p: string): string | undefined {
  if (p === "" || p.includes("\0")) return undefined;
  if (isAbsolute(p)) return resolve(p);
  return base && isAbsolute(base) ? resolve(base, p) : undefined;
}

function headHash(fd: number): string {
  const b = Buffer.alloc(64); // every span line is longer than this
  const n = fs.readSync(fd, b, 0, 64, 0);
  return createHash("sha256").update(b.subarray(0, n)).digest("hex").slice(0, 16);
}
