/**
 * Issue 19 item 2: `limactl shell`/`copy` hand their stdio to an ssh/scp/rsync child and forward
 * no signal (cmd/limactl/shell.go, copy.go), so a time-out that kills only limactl leaves the
 * child holding our pipes. Limactl.run and the doctor's spawnRunner kill the whole process
 * group and stop waiting. A stand-in "limactl" here does what Lima does: it starts a child that
 * inherits its stdout and keeps running, and ignores SIGTERM itself for good measure.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Limactl, LimactlError } from "../../../src/sys/limactl.ts";
import { spawnRunner } from "../../../src/doctor/system.ts";

const dir = mkdtempSync(join(tmpdir(), "limactl-run-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const marker = `limactl-run-${process.pid}`;
const fake = join(dir, "limactl");
// The child (a sleep named by the marker) inherits stdout; the parent waits and ignores TERM.
writeFileSync(fake, `#!/bin/sh\ntrap '' TERM\necho started\nexec 3>&1\nbash -c 'exec -a ${marker} sleep 300' &\nwait\n`, { mode: 0o755 });

function alive(): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, "utf8").startsWith(marker)) out.push(Number(e));
    } catch {}
  }
  return out;
}
async function gone(): Promise<number[]> {
  for (let k = 0; k < 100 && alive().length; k++) await Bun.sleep(20);
  return alive();
}

describe("a limactl time-out bounds the call", () => {
  test("Limactl.run: LimactlError 'timed out', the child in limactl's group is killed too", async () => {
    const l = new Limactl({ bin: fake, env: { PATH: "/usr/bin:/bin" } });
    let err: unknown = null;
    try {
      await l.run(["shell", "substrate", "sleep", "300"], { timeoutMs: 500 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LimactlError);
    expect((err as LimactlError).reason).toBe("timed out after 500 ms");
    expect((err as LimactlError).stderr).toBe("");
    expect(await gone()).toEqual([]);
  }, 60_000);

  test("an abort (e.g. a stalled image download) ends the call the same way", async () => {
    const l = new Limactl({ bin: fake, env: { PATH: "/usr/bin:/bin" } });
    const ac = new AbortController();
    setTimeout(() => ac.abort("the image download made no progress"), 300);
    await expect(l.run(["start", "x"], { abort: ac.signal })).rejects.toThrow("the image download made no progress");
    expect(await gone()).toEqual([]);
  }, 60_000);

  test("the doctor's spawnRunner: timed out, nothing left", async () => {
    const r = await spawnRunner([fake, "shell", "substrate", "true"], { timeoutMs: 500 });
    expect(r.error).toBe("timed out after 500 ms");
    expect(r.code).toBeNull();
    expect(await gone()).toEqual([]);
  }, 60_000);

  test("a normal exit still returns its output and code", async () => {
    const ok = join(dir, "ok");
    writeFileSync(ok, "#!/bin/sh\necho out; echo err >&2; exit 3\n", { mode: 0o755 });
    const r = await new Limactl({ bin: ok, env: { PATH: "/usr/bin:/bin" } }).run(["x"], { timeoutMs: 10_000 });
    expect(r).toEqual({ code: 3, stdout: "out\n", stderr: "err\n" });
  });
});
