/**
 * Issue 18 faults: the overlay base (`/var/lib/substrate/overlay`, here SUBSTRATE_OVERLAY_DIR on
 * a small loop-mounted ext4 with no reserved blocks) full during an isolated run, and full
 * before one starts. The project is never touched, nothing is half-applied, the error is clear
 * (the command's own ENOSPC, or one line from Substrate with exit 3), and the space comes back
 * when the result is discarded.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hostArgv, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

let dir: string;
let mnt: string;
let base: string;
let agent: TestAgent;
let proj: string;

const sh = (...argv: string[]) => {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString()}`);
  return r.stdout.toString();
};
const freeKb = () => Number(sh("df", "-k", "--output=avail", mnt).split("\n")[1]!.trim());

beforeAll(async () => {
  mkdirSync("/var/lib/substrate", { recursive: true });
  dir = mkdtempSync("/var/lib/substrate/test-faults-full-");
  const img = join(dir, "base.img");
  sh("truncate", "-s", "24M", img);
  sh("mkfs.ext4", "-q", "-m", "0", "-F", img);
  mnt = join(dir, "mnt");
  mkdirSync(mnt);
  sh("mount", "-o", "loop", img, mnt);
  base = join(mnt, "overlay");
  mkdirSync(base);
  agent = await startAgent({ env: { SUBSTRATE_OVERLAY_DIR: base } });
  proj = tempProject("substrate-faults-full-");
  writeFileSync(join(proj, "keep.txt"), "original\n");
});
afterAll(async () => {
  await agent?.stop();
  Bun.spawnSync(["umount", mnt]);
  rmSync(dir, { recursive: true, force: true });
  rmSync(proj, { recursive: true, force: true });
});

const cli = (cmd: string) =>
  Bun.spawnSync([...hostArgv(), "--isolated", "-c", cmd], {
    cwd: proj,
    env: { ...process.env, SUBSTRATE_WORLD_SOCKET: agent.socket, SUBSTRATE_HOME: join(dir, "h"), SUBSTRATE_TRACE: join(dir, "h", "trace.jsonl") },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
const untouched = () => {
  expect(readdirSync(proj).sort()).toEqual(["keep.txt"]);
  expect(readFileSync(join(proj, "keep.txt"), "utf8")).toBe("original\n");
};

describe("the overlay base full", () => {
  test("during an isolated run: the command sees ENOSPC, the project is untouched, discard gives the space back", async () => {
    const before = freeKb();
    const r = cli("echo changed > keep.txt; head -c 64M /dev/zero > big; echo exit=$?");
    const out = r.stdout.toString();
    const err = r.stderr.toString();
    expect(out).toContain("exit=1"); // the command's own write failed, and it was told why
    expect(err).toContain("No space left on device");
    expect(err).not.toContain("    at ");
    untouched();
    // the result is kept (not applied), and names how to land or drop it
    const span = /substrate discard (spn_[0-9a-f-]{36})/.exec(err)?.[1];
    expect(span).toBeTruthy();
    expect(freeKb()).toBeLessThan(before / 4);
    const d = Bun.spawnSync([...hostArgv(), "discard", span!], { env: { ...process.env, SUBSTRATE_WORLD_SOCKET: agent.socket, SUBSTRATE_HOME: join(dir, "h") }, stdout: "pipe", stderr: "pipe" });
    expect(d.exitCode).toBe(0);
    expect(freeKb()).toBeGreaterThan(before - 1024);
    untouched();
  }, 120_000);

  test("before an isolated run starts: one clear line, exit 3, nothing runs, nothing is left", async () => {
    const filler = join(mnt, "filler");
    // every block: one big file, then small ones until even a 1 KiB one fails
    Bun.spawnSync(["sh", "-c", `cat /dev/zero > ${filler} 2>/dev/null; mkdir -p ${filler}.d; i=0; while head -c 1024 /dev/zero > ${filler}.d/$i 2>/dev/null && [ $i -lt 5000 ]; do i=$((i+1)); done; true`]);
    try {
      expect(Bun.spawnSync(["mkdir", join(mnt, "probe")], { stderr: "pipe" }).exitCode).not.toBe(0);
      const entries = readdirSync(base);
      const r = cli("touch ran-anyway");
      const err = r.stderr.toString().trim();
      expect(r.exitCode).toBe(3);
      const lines = err.split("\n");
      expect(lines.length).toBeLessThanOrEqual(2);
      expect(lines[0]).toMatch(/^substrate: .*(no space left|ENOSPC)/i);
      expect(err).not.toContain("    at ");
      expect(err).not.toContain("running on the host");
      untouched();
      expect(existsSync(join(proj, "ran-anyway"))).toBe(false);
      expect(readdirSync(base).sort()).toEqual(entries.sort()); // no half-made overlay dir
    } finally {
      rmSync(filler, { force: true });
      rmSync(`${filler}.d`, { recursive: true, force: true });
    }
    // and with space back, the next isolated run works
    const ok = cli("echo fine");
    expect(ok.exitCode).toBe(0);
    expect(ok.stdout.toString()).toBe("fine\n");
    untouched();
  }, 120_000);
});
