/**
 * TraceWriter: many concurrent writer *processes*, rotation under load, secrets never on disk.
 * Uses a temp HOME and SUBSTRATE_TRACE; everything is removed afterwards.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Span } from "../../../src/contract/index.ts";
import {
  appendSpan,
  readSpans,
  traceFilePath,
  traceFiles,
  TraceWriter,
  buildReplayContext,
} from "../../../src/trace/index.ts";

const BUN = process.execPath;
const PROC = join(import.meta.dir, "fixtures", "writer-proc.ts");
let dir: string;

beforeAll(() => {
  dir = fs.mkdtempSync(join(tmpdir(), "substrate-trace-"));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

async function runWriters(
  n: number,
  count: number,
  pad: number,
  env: Record<string, string>,
): Promise<void> {
  const procs = Array.from({ length: n }, (_, i) =>
    Bun.spawn([BUN, PROC, String(count), `w${i}`, String(pad)], {
      env: { ...process.env, ...env },
      stdout: "ignore",
      stderr: "pipe",
    }),
  );
  const codes = await Promise.all(procs.map((p) => p.exited));
  for (const [i, p] of procs.entries()) {
    if (codes[i] !== 0) throw new Error(`writer ${i} exited ${codes[i]}: ${await new Response(p.stderr).text()}`);
  }
}

/** Every line of every file, checked: valid JSON, valid Span. */
function allLines(files: string[]): Span[] {
  const out: Span[] = [];
  for (const f of files) {
    const text = fs.readFileSync(f, "utf8");
    expect(text === "" || text.endsWith("\n")).toBe(true);
    for (const line of text.split("\n")) {
      if (line === "") continue;
      out.push(Span.parse(JSON.parse(line))); // throws on a torn or interleaved line
    }
  }
  return out;
}

describe("traceFilePath", () => {
  test("SUBSTRATE_TRACE wins, else ~/.substrate/trace.jsonl from HOME", () => {
    expect(traceFilePath({ SUBSTRATE_TRACE: "/x/t.jsonl", HOME: "/h" })).toBe("/x/t.jsonl");
    expect(traceFilePath({ HOME: "/h" })).toBe("/h/.substrate/trace.jsonl");
  });
});

describe("concurrent writers", () => {
  test("16 processes x 150 spans (5 KB lines) -> 2400 valid, distinct lines", async () => {
    const path = join(dir, "concurrent", "trace.jsonl");
    await runWriters(16, 150, 5000, { SUBSTRATE_TRACE: path });
    const spans = allLines([path]);
    expect(spans.length).toBe(2400);
    expect(new Set(spans.map((s) => s.span_id)).size).toBe(2400);
    for (let w = 0; w < 16; w++) {
      const mine = spans.filter((s) => s.session_id === `ses_w${w}`).map((s) => s.cmd);
      expect(mine.length).toBe(150);
      // each process's own lines stay in its order (O_APPEND never reorders one writer)
      expect(mine).toEqual(Array.from({ length: 150 }, (_, i) => `echo w${w}-${i}`));
    }
    expect(fs.statSync(path).mode & 0o777).toBe(0o600);
  }, 60_000);
});

describe("rotation", () => {
  test("rotation under 8 concurrent writers keeps every line", async () => {
    const path = join(dir, "rot", "trace.jsonl");
    // 8 x 250 lines of ~1.2 KB = ~2.4 MB through a 32 KiB limit: ~75 rotations
    await runWriters(8, 250, 1000, {
      SUBSTRATE_TRACE: path,
      SUBSTRATE_TRACE_MAX_BYTES: String(32 * 1024),
      SUBSTRATE_TRACE_KEEP: "100000",
    });
    const files = fs.readdirSync(join(dir, "rot")).filter((f) => f.startsWith("trace.jsonl"));
    expect(files).not.toContain("trace.jsonl.lock");
    expect(files.length).toBeGreaterThan(20);
    const all = files.map((f) => join(dir, "rot", f));
    expect(traceFiles(path).sort()).toEqual(all.sort()); // contiguous: the reader finds every file
    expect((await readSpans({ path })).length).toBe(2000);
    const spans = allLines(all);
    expect(spans.length).toBe(2000);
    expect(new Set(spans.map((s) => s.cmd)).size).toBe(2000);
    // (a file may overshoot the limit while a preempted rotator holds the lock: writers
    // never wait for it, by design; no size bound is asserted since it depends on scheduling)
  }, 60_000);

  test("keep N drops only the oldest files; the reader reads rotated files oldest first", async () => {
    const path = join(dir, "keep", "trace.jsonl");
    const w = new TraceWriter({ path, maxBytes: 2000, keep: 2 });
    for (let i = 0; i < 40; i++) {
      w.write({
        ts: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
        event_type: "command_complete",
        session_id: "ses_keep",
        span_id: `spn_${Bun.randomUUIDv7()}`,
        component: "shell",
        cmd: `step ${String(i).padStart(2, "0")} ${"y".repeat(200)}`,
        exit: 0,
      });
    }
    const files = traceFiles(path);
    expect(files).toEqual([`${path}.2`, `${path}.1`, path].filter((f) => fs.existsSync(f)));
    expect(fs.existsSync(`${path}.3`)).toBe(false);
    const spans = await readSpans({ path });
    const steps = spans.map((s) => Number(s.cmd!.split(" ")[1]));
    // contiguous, ending at the last one written
    expect(steps.at(-1)).toBe(39);
    for (let i = 1; i < steps.length; i++) expect(steps[i]).toBe(steps[i - 1]! + 1);
  });

  test("a stale lock left by a dead rotator does not stop rotation", () => {
    const path = join(dir, "stale", "trace.jsonl");
    fs.mkdirSync(join(dir, "stale"), { recursive: true });
    fs.writeFileSync(`${path}.lock`, "999999999\n"); // no such pid
    const w = new TraceWriter({ path, maxBytes: 100, keep: 3 });
    w.write({
      ts: new Date().toISOString(),
      event_type: "builtin_command",
      session_id: "s",
      span_id: `spn_${Bun.randomUUIDv7()}`,
      component: "shell",
      cmd: `cd ${"z".repeat(200)}`,
    });
    expect(fs.existsSync(`${path}.1`)).toBe(true);
    expect(fs.existsSync(`${path}.lock`)).toBe(false);
  });
});

describe("secrets never reach trace.jsonl", () => {
  test("env values and token-like arguments are absent from the file (grep)", async () => {
    const path = join(dir, "secrets", "trace.jsonl");
    const env = {
      PATH: "/usr/bin:/bin",
      LANG: "C.UTF-8",
      GITHUB_TOKEN: "ghp_envSecretValue0123456789abcdefXYZ",
      MY_DB_PASSWORD: "hunter2-env-only",
    };
    const secrets = [
      "hunter2-env-only",
      "ghp_envSecretValue0123456789abcdefXYZ",
      "s3cr3t-pass",
      "tok-123456789",
      "abcDEF123456ghiJKL",
      "AKIAIOSFODNN7EXAMPLE",
      "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
      "topsecretpw",
      "sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAA",
    ];
    const cmds = [
      "mysql --password=s3cr3t-pass -u root",
      "deploy --token tok-123456789 --env prod",
      "curl -H 'Authorization: Bearer abcDEF123456ghiJKL' https://example.invalid",
      "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY aws s3 ls",
      "git clone https://bob:topsecretpw@git.example.invalid/repo.git",
      "ANTHROPIC_API_KEY=sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAA claude",
    ];
    for (const cmd of cmds) {
      await appendSpan(
        {
          ts: new Date().toISOString(),
          event_type: "command_complete",
          session_id: "ses_sec",
          span_id: `spn_${Bun.randomUUIDv7()}`,
          component: "shell",
          cwd: "/tmp",
          cmd,
          exit: 0,
          replay_context: buildReplayContext({ cwd: "/tmp", env, policyId: "default", policyCommit: null }),
        },
        { path },
      );
    }
    const text = fs.readFileSync(path, "utf8");
    for (const s of secrets) expect(text).not.toContain(s);
    // the non-secret parts survive, so the trace stays useful
    expect(text).toContain("mysql --password=[REDACTED] -u root");
    expect(text).toContain("aws s3 ls");
    expect(text).toContain("git.example.invalid/repo.git");
    expect(text).not.toContain("GITHUB_TOKEN");
    expect(text.split("\n").filter(Boolean).length).toBe(cmds.length);
  });
});
