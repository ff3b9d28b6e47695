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
import type { Span } from "../contract/span.ts";
import { parseSpanLine, traceFiles } from "../trace/reader.ts";
import { PrivacyFilter, type PrivacyConfig } from "./privacy.ts";

/*
 * Integer surrogate keys (rowids) for spans and files: edges are pairs of integers, which
 * keeps a 100k-span graph compact and its joins cheap. Span rids grow in ingest order,
 * which is trace order, so "newest first" is "highest rid first" (an index walk, no sort).
 * Per-agent counters (spans, failures, files written) are kept up to date at ingest, so
 * `graph agent` never aggregates over all of an agent's spans.
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS span (
  rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, cmd TEXT, exit INTEGER, ts TEXT, event_type TEXT,
  session_id TEXT, agent_id TEXT, cwd TEXT, world_id TEXT
);
CREATE TABLE IF NOT EXISTS file (fid INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, hash TEXT, dir TEXT);
CREATE TABLE IF NOT EXISTS dir (path TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agent (
  id TEXT PRIMARY KEY, type TEXT, spans INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
  first_ts TEXT, last_ts TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS wrote (
  span INTEGER NOT NULL, file INTEGER NOT NULL, kind TEXT NOT NULL, bytes INTEGER, PRIMARY KEY (span, file)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS wrote_by_file ON wrote (file, span);
CREATE TABLE IF NOT EXISTS read (span INTEGER NOT NULL, file INTEGER NOT NULL, PRIMARY KEY (span, file)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS read_by_file ON read (file, span);
CREATE TABLE IF NOT EXISTS executed_by (span INTEGER PRIMARY KEY, agent TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS executed_by_agent ON executed_by (agent, span);
CREATE TABLE IF NOT EXISTS parent_of (parent INTEGER NOT NULL, child INTEGER NOT NULL, PRIMARY KEY (parent, child)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS parent_of_child ON parent_of (child);
CREATE TABLE IF NOT EXISTS agent_file (
  agent TEXT NOT NULL, file INTEGER NOT NULL, writes INTEGER NOT NULL, PRIMARY KEY (agent, file)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS agent_file_top ON agent_file (agent, writes);
CREATE TABLE IF NOT EXISTS ingest_state (ino INTEGER PRIMARY KEY, off INTEGER NOT NULL, head TEXT NOT NULL, path TEXT);
`;

/** Events that stand for a command (become Span nodes). */
const NODE_EVENTS = new Set<Span["event_type"]>([
  "command_start",
  "command_complete",
  "builtin_command",
  "policy_denied",
  "replay",
]);

/** Above this many matching edges a directory is "dense": walk spans newest-first instead of sorting. */
const DENSE_DIR_EDGES = 5000;

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

type Row = Record<string, unknown>;

export class SpanGraph {
  readonly db: Database;
  readonly privacy: PrivacyFilter;
  private readonly fids = new Map<string, number>();
  // nodes known to exist: skip their INSERT OR IGNORE (ingest is statement-bound)
  private readonly knownAgents = new Set<string>();
  private readonly knownDirs = new Set<string>();
  private st!: Record<
    | "spanGet" | "spanNew" | "spanStub" | "spanComplete" | "file" | "dir" | "agentNew" | "agentSpan" | "agentFail"
    | "wrote" | "read" | "executed" | "parent" | "agentFile",
    Statement
  >;

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
    const q = (sql: string) => this.db.prepare(sql);
    this.st = {
      spanGet: q("SELECT rid, exit, event_type FROM span WHERE id = ?"),
      spanNew: q(
        `INSERT INTO span (id, cmd, exit, ts, event_type, session_id, agent_id, cwd, world_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING rid`,
      ),
      // a parent seen (as parent_span) before its own line: a node with only its id
      spanStub: q("INSERT INTO span (id) VALUES (?) RETURNING rid"),
      // the completion (or the first real line of a stub) fills the node in
      spanComplete: q(
        `UPDATE span SET cmd = ?, exit = ?, ts = coalesce(ts, ?), event_type = ?, session_id = coalesce(session_id, ?),
           agent_id = coalesce(agent_id, ?), cwd = coalesce(cwd, ?), world_id = coalesce(?, world_id) WHERE rid = ?`,
      ),
      file: q(
        `INSERT INTO file (path, hash, dir) VALUES (?, ?, ?)
         ON CONFLICT (path) DO UPDATE SET hash = coalesce(excluded.hash, file.hash) RETURNING fid`,
      ),
      dir: q("INSERT OR IGNORE INTO dir (path) VALUES (?)"),
      agentNew: q("INSERT OR IGNORE INTO agent (id, type) VALUES (?, ?)"),
      agentSpan: q(
        `UPDATE agent SET spans = spans + 1,
           first_ts = CASE WHEN first_ts IS NULL OR ?1 < first_ts THEN ?1 ELSE first_ts END,
           last_ts = CASE WHEN last_ts IS NULL OR ?1 > last_ts THEN ?1 ELSE last_ts END WHERE id = ?2`,
      ),
      agentFail: q("UPDATE agent SET failures = failures + 1 WHERE id = ?"),
      wrote: q("INSERT OR IGNORE INTO wrote (span, file, kind, bytes) VALUES (?, ?, ?, ?)"),
      read: q("INSERT OR IGNORE INTO read (span, file) VALUES (?, ?)"),
      executed: q("INSERT OR IGNORE INTO executed_by (span, agent) VALUES (?, ?)"),
      parent: q("INSERT OR IGNORE INTO parent_of (parent, child) VALUES (?, ?)"),
      agentFile: q(
        `INSERT INTO agent_file (agent, file, writes) VALUES (?, ?, 1)
         ON CONFLICT (agent, file) DO UPDATE SET writes = writes + 1`,
      ),
    };
  }

  close(): void {
    this.db.close();
  }

  /** Ingest spans (one transaction). Privacy filters decide which files become nodes. Idempotent. */
  ingest(spans: Iterable<Span>): number {
    let n = 0;
    const tx = this.db.transaction((list: Iterable<Span>) => {
      for (const s of list) if (this.ingestOne(s)) n++;
    });
    try {
      tx(spans);
    } catch (e) {
      // rolled back: the caches may name rows that are not there any more
      this.fids.clear();
      this.knownAgents.clear();
      this.knownDirs.clear();
      throw e;
    }
    return n;
  }

  private spanRid(id: string): number {
    const r = this.st.spanGet.get(id) as { rid: number } | null;
    return r ? r.rid : (this.st.spanStub.get(id) as { rid: number }).rid;
  }

  private ingestOne(s: Span): boolean {
    if (!NODE_EVENTS.has(s.event_type)) return false;
    const prev = this.st.spanGet.get(s.span_id) as { rid: number; exit: number | null; event_type: string | null } | null;
    const exit = s.exit ?? null;
    let rid: number;
    let counted = false; // first real line of this span: counts for its agent
    let completedNow = false; // exit became known with this line
    if (!prev) {
      rid = (
        this.st.spanNew.get(s.span_id, s.cmd ?? null, exit, s.ts, s.event_type, s.session_id, s.agent_id, s.cwd ?? null, s.world_id ?? null) as {
          rid: number;
        }
      ).rid;
      counted = true;
      completedNow = exit !== null;
    } else {
      rid = prev.rid;
      const stub = prev.event_type === null;
      const upgrade = s.event_type !== "command_start" && (stub || prev.event_type === "command_start");
      if (stub || upgrade)
        this.st.spanComplete.run(s.cmd ?? null, exit, s.ts, s.event_type, s.session_id, s.agent_id, s.cwd ?? null, s.world_id ?? null, rid);
      counted = stub;
      completedNow = upgrade && prev.exit === null && exit !== null;
    }
    if (!this.knownAgents.has(s.agent_id)) {
      this.st.agentNew.run(s.agent_id, s.agent_id === "human" ? "human" : "agent");
      this.knownAgents.add(s.agent_id);
    }
    if (counted) this.st.agentSpan.run(s.ts, s.agent_id);
    if (completedNow && exit !== 0) this.st.agentFail.run(s.agent_id);
    this.st.executed.run(rid, s.agent_id);
    if (s.parent_span) this.st.parent.run(this.spanRid(s.parent_span), rid);
    if (s.replay_of) this.st.parent.run(this.spanRid(s.replay_of), rid);
    const base = s.replay_context?.cwd ?? s.cwd;
    const d = s.fs_diff;
    if (d) {
      for (const p of d.writes) this.fileEdge(rid, s.agent_id, base, p, "write");
      for (const p of d.mods) this.fileEdge(rid, s.agent_id, base, p, "mod");
      for (const p of d.deletes) this.fileEdge(rid, s.agent_id, base, p, "delete");
    }
    // READ edges come from scopes of the form `fs.read:<path>` (files the world saw read)
    for (const sc of s.scopes_used ?? []) {
      if (!sc.startsWith("fs.read:")) continue;
      const abs = absolutize(base, sc.slice("fs.read:".length));
      if (abs && this.privacy.shouldIndex(abs)) this.st.read.run(rid, this.fileNode(abs, null));
    }
    return true;
  }

  private fileEdge(rid: number, agent: string, base: string | undefined, p: string, kind: ChangedFile["kind"]): void {
    const abs = absolutize(base, p);
    if (!abs || !this.privacy.shouldIndex(abs)) return;
    let hash: string | null = null;
    let bytes: number | null = null;
    // Hashing reads the file on this host after the fact: the world may have been isolated,
    // so the file may be absent (then no hash) or changed since (the hash is "as last seen").
    if (kind !== "delete" && this.privacy.shouldHash(abs)) {
      try {
        const st = fs.statSync(abs);
        if (st.isFile() && st.size <= 16 * 1024 * 1024) {
          bytes = st.size;
          hash = `sha256:${createHash("sha256").update(fs.readFileSync(abs)).digest("hex")}`;
        }
      } catch {
        /* not on this host */
      }
    }
    const fid = this.fileNode(abs, hash);
    if (this.st.wrote.run(rid, fid, kind, bytes).changes === 1) this.st.agentFile.run(agent, fid);
  }

  private fileNode(abs: string, hash: string | null): number {
    const known = hash === null ? this.fids.get(abs) : undefined;
    if (known !== undefined) return known;
    const dir = dirname(abs);
    if (!this.knownDirs.has(dir)) {
      this.st.dir.run(dir);
      if (this.knownDirs.size > 100_000) this.knownDirs.clear();
      this.knownDirs.add(dir);
    }
    const fid = (this.st.file.get(abs, hash, dir) as { fid: number }).fid;
    if (this.fids.size > 500_000) this.fids.clear();
    this.fids.set(abs, fid);
    return fid;
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
    // CROSS JOIN pins the join order: start from the (tiny) span tree, never from `wrote`.
    return this.db
      .prepare(
        `WITH RECURSIVE tree(rid, depth) AS (
           SELECT rid, 0 FROM span WHERE id = ?
           UNION SELECT p.child, tree.depth + 1 FROM tree CROSS JOIN parent_of p ON p.parent = tree.rid WHERE tree.depth < 32
         )
         SELECT f.path AS path, w.kind AS kind, f.hash AS hash, s.id AS span_id
         FROM tree CROSS JOIN wrote w ON w.span = tree.rid CROSS JOIN file f ON f.fid = w.file
              CROSS JOIN span s ON s.rid = w.span
         ORDER BY f.path, s.rid`,
      )
      .all(spanId) as ChangedFile[];
  }

  /** `graph who-wrote <path>`: spans that wrote the file (or anything under the directory), newest first. */
  whoWrote(path: string, limit = 100): Writer[] {
    const p = path.replace(/\/+$/, "") || "/";
    const cols = `s.id AS span_id, s.ts AS ts, s.cmd AS cmd, s.agent_id AS agent_id, s.exit AS exit, f.path AS path, w.kind AS kind`;
    const exact = this.db
      .prepare(
        `SELECT ${cols} FROM file f CROSS JOIN wrote w INDEXED BY wrote_by_file ON w.file = f.fid
         CROSS JOIN span s ON s.rid = w.span WHERE f.path = ? ORDER BY w.span DESC LIMIT ?`,
      )
      .all(p, limit) as Writer[];
    const lo = `${p === "/" ? "" : p}/`;
    const hi = `${p === "/" ? "" : p}0`; // "0" follows "/" in byte order: [lo, hi) = everything under p/
    const edges = (
      this.db
        .prepare(
          `SELECT count(*) AS n FROM (SELECT 1 FROM file f CROSS JOIN wrote w INDEXED BY wrote_by_file ON w.file = f.fid
           WHERE f.path >= ? AND f.path < ? LIMIT ${DENSE_DIR_EDGES})`,
        )
        .get(lo, hi) as { n: number }
    ).n;
    if (edges === 0) return exact;
    // dense directory: walk `wrote` newest-first until `limit` rows match (no sort of 100k rows);
    // sparse: collect the few matching edges through the file index and sort them.
    const under =
      edges >= DENSE_DIR_EDGES
        ? (this.db
            .prepare(
              `SELECT ${cols} FROM wrote w CROSS JOIN file f ON f.fid = w.file CROSS JOIN span s ON s.rid = w.span
               WHERE f.path >= ? AND f.path < ? ORDER BY w.span DESC LIMIT ?`,
            )
            .all(lo, hi, limit) as Writer[])
        : (this.db
            .prepare(
              `SELECT ${cols} FROM file f CROSS JOIN wrote w INDEXED BY wrote_by_file ON w.file = f.fid
               CROSS JOIN span s ON s.rid = w.span WHERE f.path >= ? AND f.path < ? ORDER BY w.span DESC LIMIT ?`,
            )
            .all(lo, hi, limit) as Writer[]);
    return exact.length === 0 ? under : [...exact, ...under].slice(0, limit);
  }

  /** `graph agent <id>`: what an agent did. undefined when the agent is unknown. */
  agent(id: string, recent = 20): AgentSummary | undefined {
    const a = this.db.prepare("SELECT spans, failures, first_ts, last_ts FROM agent WHERE id = ?").get(id) as
      | { spans: number; failures: number; first_ts: string | null; last_ts: string | null }
      | null;
    if (!a || a.spans === 0) return undefined;
    const recentRows = this.db
      .prepare(
        `SELECT s.id AS span_id, s.ts AS ts, s.cmd AS cmd, s.exit AS exit
         FROM executed_by e INDEXED BY executed_by_agent CROSS JOIN span s ON s.rid = e.span
         WHERE e.agent = ? ORDER BY e.span DESC LIMIT ?`,
      )
      .all(id, recent) as AgentSummary["recent"];
    const top = this.db
      .prepare(
        `SELECT f.path AS path, af.writes AS writes FROM agent_file af INDEXED BY agent_file_top
         CROSS JOIN file f ON f.fid = af.file WHERE af.agent = ? ORDER BY af.writes DESC LIMIT 10`,
      )
      .all(id) as AgentSummary["top_files"];
    const distinct = this.db.prepare("SELECT count(*) AS n FROM agent_file WHERE agent = ?").get(id) as { n: number };
    return {
      agent_id: id,
      spans: a.spans,
      failures: a.failures,
      first_ts: a.first_ts,
      last_ts: a.last_ts,
      files_written: distinct.n,
      recent: recentRows,
      top_files: top,
    };
  }

  counts(): Record<string, number> {
    const c = (t: string) => (this.db.prepare(`SELECT count(*) AS n FROM ${t}`).get() as Row).n as number;
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
