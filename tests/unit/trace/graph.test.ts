/**
 * Span graph: opt-in config, privacy filters (ignored paths never reach the database file),
 * incremental ingestion from trace.jsonl across rotation, the three queries.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { SpanInput } from "../../../src/contract/index.ts";
import { newSpanId } from "../../../src/contract/index.ts";
import {
  defaultPrivacy,
  GraphConfigError,
  GraphDisabledError,
  loadGraphConfig,
  openGraph,
  PrivacyFilter,
  SpanGraph,
} from "../../../src/graph/index.ts";
import { TraceWriter } from "../../../src/trace/index.ts";

let home: string;
let env: Record<string, string>;
let project: string;
beforeAll(() => {
  home = fs.mkdtempSync(join(tmpdir(), "substrate-graph-"));
  project = join(home, "proj");
  fs.mkdirSync(join(project, "src"), { recursive: true });
  env = { HOME: home, SUBSTRATE_TRACE: join(home, ".substrate", "trace.jsonl") };
});
afterAll(() => fs.rmSync(home, { recursive: true, force: true }));

const enable = (extra = "") => {
  fs.mkdirSync(join(home, ".substrate"), { recursive: true });
  fs.writeFileSync(join(home, ".substrate", "config.toml"), `[world]\nenabled = true\n\n[graph]\nenabled = true\n${extra}`);
};

function span(p: Partial<SpanInput> & { cmd: string }): SpanInput {
  return {
    ts: new Date().toISOString(),
    event_type: "command_complete",
    session_id: "ses_g",
    span_id: newSpanId(),
    component: "shell",
    cwd: project,
    exit: 0,
    ...p,
  };
}

describe("config", () => {
  test("off by default; on with graph.enabled = true; errors name the file and field", () => {
    expect(loadGraphConfig(env).enabled).toBe(false);
    expect(() => openGraph(env)).toThrow(GraphDisabledError);
    enable();
    const c = loadGraphConfig(env);
    expect(c.enabled).toBe(true);
    expect(c.dir).toBe(join(home, ".substrate", "graph"));
    fs.writeFileSync(join(home, ".substrate", "config.toml"), "[graph]\nenabled = \"yes\"\n");
    expect(() => loadGraphConfig(env)).toThrow(GraphConfigError);
    expect(() => loadGraphConfig(env)).toThrow(/config\.toml: graph\.enabled/);
    // SUBSTRATE_HOME moves the directory, as for the rest of the CLI
    const alt = join(home, "alt");
    fs.mkdirSync(alt);
    fs.writeFileSync(join(alt, "config.toml"), "[graph]\nenabled = true\nhash_non_code = true\n");
    const c2 = loadGraphConfig({ ...env, SUBSTRATE_HOME: alt });
    expect(c2).toMatchObject({ enabled: true, dir: join(alt, "graph"), privacy: { hash_non_code: true, index_user_docs: false } });
    enable();
  });
});

describe("privacy filter", () => {
  const f = new PrivacyFilter(defaultPrivacy(), "/home/u");
  test.each([
    ["/home/u/.ssh/id_ed25519", true],
    ["/home/u/.ssh", true],
    ["/home/u/Library/Keychains/login.keychain", true],
    ["/var/log/auth.log", true],
    ["/var/log/auth.log.1", true],
    ["/work/app/.env", true],
    ["/work/app/config/.env", true],
    ["/work/app/secrets/db.ts", true],
    ["/work/app/secrets", true],
    ["/work/app/src/main.ts", false],
    ["/work/app/.envrc.ts", false],
    ["/var/log/syslog", false],
    ["/home/u/sshnotes/a.ts", false],
  ])("%s ignored=%p", (p, ignored) => {
    expect(f.ignored(p)).toBe(ignored);
  });
  test("code only unless index_user_docs; non-code hashing opt-in (hash_non_code)", () => {
    expect(f.shouldIndex("/w/a.ts")).toBe(true);
    expect(f.shouldIndex("/w/notes.md")).toBe(false);
    expect(f.shouldHash("/w/a.ts")).toBe(true);
    expect(f.shouldHash("/w/.env")).toBe(false);
    const docs = new PrivacyFilter({ ...defaultPrivacy(), index_user_docs: true }, "/home/u");
    expect(docs.shouldIndex("/w/notes.md")).toBe(true);
    expect(docs.shouldIndex("/w/.env")).toBe(false);
    expect(docs.shouldHash("/w/a.ts")).toBe(true);
    expect(docs.shouldHash("/w/notes.md")).toBe(false);
    const all = new PrivacyFilter({ ...defaultPrivacy(), index_user_docs: true, hash_non_code: true }, "/h");
    expect(all.shouldHash("/w/notes.md")).toBe(true);
  });

  test("hashes land in File nodes: code files hashed, non-code only with hash_non_code", () => {
    const dir = fs.mkdtempSync(join(home, "hash-"));
    fs.writeFileSync(join(dir, "a.ts"), "x");
    fs.writeFileSync(join(dir, "n.md"), "y");
    const s = { ...span({ cmd: "w", cwd: dir, fs_diff: { writes: ["a.ts", "n.md"], mods: [], deletes: [] } }), agent_id: "human" };
    const g1 = new SpanGraph(join(dir, "g1"), { ...defaultPrivacy(), index_user_docs: true }, home);
    g1.ingest([s as never]);
    const rows = (g: SpanGraph) => Object.fromEntries((g.db.prepare("SELECT path, hash FROM file").all() as { path: string; hash: string | null }[]).map((r) => [r.path.slice(dir.length + 1), r.hash]));
    expect(rows(g1)["a.ts"]).toBe(`sha256:${new Bun.CryptoHasher("sha256").update("x").digest("hex")}`);
    expect(rows(g1)["n.md"]).toBeNull();
    g1.close();
    const g2 = new SpanGraph(join(dir, "g2"), { ...defaultPrivacy(), index_user_docs: true, hash_non_code: true }, home);
    g2.ingest([s as never]);
    expect(rows(g2)["n.md"]).toMatch(/^sha256:/);
    g2.close();
  });
});

describe("ingest and queries", () => {
  test("ignored paths stay out of the graph database entirely", () => {
    enable();
    const w = new TraceWriter({ path: env.SUBSTRATE_TRACE });
    const s = w.write(
      span({
        cmd: "setup",
        agent_id: "claude",
        fs_diff: {
          writes: [
            "src/ok.ts",
            ".env",
            "secrets/key.ts",
            "docs/readme.md",
            `${home}/.ssh/authorized_keys`,
            `${home}/Library/x.ts`,
            "/var/log/auth.log",
          ],
          mods: [],
          deletes: [],
        },
        scopes_used: [`fs.read:${home}/.ssh/id_rsa`, "fs.read:src/lib.ts"],
      }),
    );
    const g = openGraph(env);
    try {
      expect(g.whatChanged(s.span_id).map((f) => f.path)).toEqual([join(project, "src/ok.ts")]);
      const files = (g.db.prepare("SELECT path FROM file").all() as { path: string }[]).map((r) => r.path);
      expect(files.sort()).toEqual([join(project, "src/lib.ts"), join(project, "src/ok.ts")]);
    } finally {
      g.close();
    }
    // grep the database files themselves: not even a dir node or an edge mentions them
    const dbBytes = fs
      .readdirSync(join(home, ".substrate", "graph"))
      .map((f) => fs.readFileSync(join(home, ".substrate", "graph", f)).toString("latin1"))
      .join("");
    for (const bad of [".ssh", "/.env", "secrets/key", "Library", "auth.log", "readme.md"]) expect(dbBytes).not.toContain(bad);
  });

  test("what-changed (incl. child spans), who-wrote (file and directory), agent", () => {
    const w = new TraceWriter({ path: env.SUBSTRATE_TRACE });
    const parent = w.write(span({ cmd: "make", agent_id: "cursor", fs_diff: { writes: ["src/gen.ts"], mods: [], deletes: [] } }));
    const child = w.write(
      span({
        cmd: "cc -o x x.c",
        agent_id: "cursor",
        parent_span: parent.span_id,
        exit: 1,
        fs_diff: { writes: [], mods: ["src/x.c"], deletes: ["src/old.go"] },
      }),
    );
    w.write(span({ cmd: "vim src/gen.ts", agent_id: "human", fs_diff: { writes: [], mods: ["src/gen.ts"], deletes: [] } }));
    const g = openGraph(env);
    try {
      expect(g.whatChanged(parent.span_id).map((f) => [f.path.slice(project.length + 1), f.kind, f.span_id])).toEqual([
        ["src/gen.ts", "write", parent.span_id],
        ["src/old.go", "delete", child.span_id],
        ["src/x.c", "mod", child.span_id],
      ]);
      const who = g.whoWrote(join(project, "src/gen.ts"));
      expect(who.map((r) => [r.agent_id, r.kind])).toEqual([
        ["human", "mod"],
        ["cursor", "write"],
      ]);
      expect(new Set(g.whoWrote(join(project, "src")).map((r) => r.cmd))).toEqual(
        new Set(["setup", "make", "cc -o x x.c", "vim src/gen.ts"]),
      );
      expect(g.whoWrote(join(project, "sr"))).toEqual([]); // prefix of a name is not a directory
      const a = g.agent("cursor")!;
      expect(a).toMatchObject({ agent_id: "cursor", spans: 2, failures: 1, files_written: 3 });
      expect(a.recent.map((r) => r.cmd)).toEqual(["cc -o x x.c", "make"]);
      expect(g.agent("nobody")).toBeUndefined();
      const c = g.counts();
      expect(c.parent_of).toBe(1);
      expect(c.agents).toBe(3);
    } finally {
      g.close();
    }
  });

  test("sync is incremental, idempotent, and follows rotation", () => {
    const dir = fs.mkdtempSync(join(home, "sync-"));
    const path = join(dir, "t.jsonl");
    const w = new TraceWriter({ path, maxBytes: 3000, keep: 50 });
    const g = new SpanGraph(join(dir, "g"), defaultPrivacy(), home);
    try {
      let total = 0;
      for (let round = 0; round < 5; round++) {
        for (let i = 0; i < 20; i++) w.write(span({ cmd: `r${round} c${i}`, fs_diff: { writes: [`src/r${round}_${i}.ts`], mods: [], deletes: [] } }));
        total += 20;
        const st = g.sync(path);
        expect(st.spans).toBe(20); // only the new lines
        expect(g.counts().spans).toBe(total);
      }
      expect(fs.existsSync(`${path}.3`)).toBe(true); // rotation happened in between
      expect(g.sync(path).spans).toBe(0);
      expect(g.counts().wrote).toBe(100);
      // a fresh graph over the same trace ingests everything once
      const g2 = new SpanGraph(join(dir, "g2"), defaultPrivacy(), home);
      g2.sync(path);
      g2.sync(path);
      expect(g2.counts().spans).toBe(100);
      g2.close();
    } finally {
      g.close();
    }
  });

  test("start then complete lines make one Span node carrying the exit code", () => {
    const dir = fs.mkdtempSync(join(home, "sc-"));
    const g = new SpanGraph(dir, defaultPrivacy(), home);
    const id = newSpanId();
    const base = span({ cmd: "sleep 1", span_id: id });
    g.ingest([
      { ...base, event_type: "command_start", exit: undefined, agent_id: "human" } as never,
      { ...base, exit: 7, agent_id: "human" } as never,
    ]);
    expect(g.db.prepare("SELECT exit, event_type FROM span WHERE id = ?").get(id)).toEqual({ exit: 7, event_type: "command_complete" });
    g.close();
  });
});
