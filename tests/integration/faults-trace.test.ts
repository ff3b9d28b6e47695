/**
 * Issue 18 faults: the trace file unwritable or its disk full. The command still runs (same
 * output, same exit code), one warning line, no crash — on the host (the CLI's trace) and in
 * the world agent (its spans). When space comes back, the next span is whole: a write cut
 * short by ENOSPC never glues a torn line onto the next one.
 * Real mounts: size-limited and read-only tmpfs, created and removed here.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hostArgv, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

let dir: string;
let full: string;
let ro: string;
let agent: TestAgent;
let proj: string;

const sh = (...argv: string[]) => {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString()}`);
};
/** Fill a filesystem to the last byte. */
const fill = (mnt: string) => Bun.spawnSync(["sh", "-c", `cat /dev/zero > ${mnt}/fill 2>/dev/null; true`]);

beforeAll(async () => {
  dir = mkdtempSync("/tmp/substrate-faults-trace-");
  full = join(dir, "full");
  ro = join(dir, "ro");
  mkdirSync(full);
  mkdirSync(ro);
  sh("mount", "-t", "tmpfs", "-o", "size=256k", "substrate-test-full", full);
  sh("mount", "-t", "tmpfs", "-o", "ro,size=64k", "substrate-test-ro", ro);
  agent = await startAgent();
  proj = tempProject();
});
afterAll(async () => {
  await agent?.stop();
  Bun.spawnSync(["umount", full]);
  Bun.spawnSync(["umount", ro]);
  rmSync(dir, { recursive: true, force: true });
  rmSync(proj, { recursive: true, force: true });
});

describe("the host's trace file", () => {
  const cases: [string, () => string][] = [
    ["a directory", () => {
      const d = join(dir, "a-dir");
      mkdirSync(d, { recursive: true });
      return d;
    }],
    ["on a read-only filesystem", () => join(ro, "trace.jsonl")],
    ["on a full disk", () => {
      fill(full);
      return join(full, "trace.jsonl");
    }],
  ];
  for (const [name, where] of cases) {
    test(`${name}: the command runs, one warning, its exit code`, () => {
      const trace = where();
      const r = Bun.spawnSync([...hostArgv(), "-c", "echo out; echo err >&2; exit 7"], {
        cwd: proj,
        env: { ...process.env, SUBSTRATE_WORLD_SOCKET: agent.socket, SUBSTRATE_TRACE: trace, SUBSTRATE_HOME: join(proj, ".h") },
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
      });
      expect(r.exitCode).toBe(7);
      expect(r.stdout.toString()).toBe("out\n");
      const lines = r.stderr.toString().trim().split("\n");
      const warnings = lines.filter((l) => l.startsWith("substrate:"));
      expect(lines.filter((l) => !l.startsWith("substrate:"))).toEqual(["err"]);
      expect(warnings.length).toBe(1);
      expect(warnings[0]).toStartWith("substrate: cannot write the trace (");
      expect(warnings[0]).toContain("the command is not affected");
    });
  }
});

describe("the world agent's trace file", () => {
  let a: TestAgent;
  let trace: string;
  beforeAll(async () => {
    rmSync(join(full, "fill"), { force: true });
    trace = join(full, "agent-trace.jsonl");
    a = await startAgent({ env: { SUBSTRATE_TRACE: trace } });
  });
  afterAll(async () => {
    await a?.stop();
  });

  test("on a full disk: every execute answers, the agent lives, at most one warning; once space is back, spans are whole again", async () => {
    const ok = await a.client.execute({ cmd: "echo warm", cwd: proj, agent_id: "trace-full" });
    expect(Buffer.from(ok.stdout_b64, "base64").toString()).toBe("warm\n");
    fill(full);
    // leave a few bytes so a span write is cut short (the torn-line case), not refused outright
    Bun.spawnSync(["truncate", "-s", "-200", join(full, "fill")]);
    for (let i = 0; i < 10; i++) {
      const r = await a.client.execute({ cmd: `echo run-${i}; exit ${i % 3}`, cwd: proj, agent_id: "trace-full" });
      expect(r.exit).toBe(i % 3);
      expect(Buffer.from(r.stdout_b64, "base64").toString()).toBe(`run-${i}\n`);
    }
    expect(a.proc.exitCode).toBeNull();
    const warns = a.stderr().split("\n").filter((l) => /trace/i.test(l) && /cannot|ENOSPC|space/i.test(l));
    expect(warns.length).toBeLessThanOrEqual(1);

    rmSync(join(full, "fill"));
    const after = await a.client.execute({ cmd: "echo back", cwd: proj, agent_id: "trace-full" });
    const lines = readFileSync(trace, "utf8").split("\n").filter(Boolean);
    const parsed = lines.map((l) => {
      try {
        return JSON.parse(l) as { span_id?: string };
      } catch {
        return null;
      }
    });
    expect(parsed.filter((p) => p === null).length).toBe(0); // no torn line anywhere
    expect(parsed.some((p) => p?.span_id === after.span_id)).toBe(true);
    expect(parsed.some((p) => p?.span_id === ok.span_id)).toBe(true);
  }, 120_000);
});
