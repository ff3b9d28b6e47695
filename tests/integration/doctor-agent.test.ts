/**
 * agent/doctor.ts on the real kernel: the Landlock syscall, and the enumeration_v1 probe both
 * passing and failing for real (an overlay cannot be the upper layer of another overlay, so a
 * base dir inside an overlay mount makes the kernel strategy fail; fuse-overlayfs then rescues it).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { collectWorldDoctorReport, detectLandlock } from "../../agent/doctor.ts";
import { WorldDoctorReportV1 } from "../../src/contract/index.ts";

const tmp = mkdtempSync(join(tmpdir(), "doctor-agent-"));
const merged = join(tmp, "m");
const mounts = () => readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((l) => l.includes(tmp));

async function sh(cmd: string[]): Promise<void> {
  const p = Bun.spawn(cmd, { stdout: "ignore", stderr: "pipe" });
  if ((await p.exited) !== 0) throw new Error(`${cmd.join(" ")}: ${await new Response(p.stderr).text()}`);
}

beforeAll(async () => {
  for (const d of ["l", "u", "w", "m"]) mkdirSync(join(tmp, d));
  await sh(["mount", "-t", "overlay", "overlay", "-o", `lowerdir=${tmp}/l,upperdir=${tmp}/u,workdir=${tmp}/w`, merged]);
});
afterAll(async () => {
  await sh(["umount", merged]);
  rmSync(tmp, { recursive: true, force: true });
});

describe("collectWorldDoctorReport", () => {
  test("Landlock ABI from the syscall is a positive integer here", () => {
    const l = detectLandlock();
    expect(l.supported).toBe(true);
    expect(Number.isInteger(l.abi) && l.abi! >= 1).toBe(true);
  });

  test("healthy world: ok=true, probe passes, timestamp in seconds with Z", async () => {
    const r = await collectWorldDoctorReport({ baseDir: join(tmp, "base-ok") });
    expect(WorldDoctorReportV1.parse(r).ok).toBe(true);
    expect(r.collected_at_utc).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });

  test("kernel overlay on an overlay upper: probe fails for real → ok=false with the reason", async () => {
    const before = mounts().length;
    const r = await collectWorldDoctorReport({ baseDir: join(merged, "base"), strategies: ["overlay"] });
    expect(r.ok).toBe(false);
    expect(r.world_fs_strategy.probe.result).toBe("fail");
    expect(r.world_fs_strategy.probe.failure_reason).toContain("overlay");
    expect(mounts().length).toBe(before); // the probe's mount died with its namespace
  });

  test("…and fuse-overlayfs, the fallback, passes the same probe", async () => {
    const r = await collectWorldDoctorReport({ baseDir: join(merged, "base2") });
    expect(r.ok).toBe(true);
    expect(r.world_fs_strategy.probe.failure_reason).toBeNull();
  });

  test("Landlock unsupported (injected) makes ok=false even when the probe passes", async () => {
    const r = await collectWorldDoctorReport({
      baseDir: join(tmp, "base3"),
      landlock: () => ({ supported: false, abi: null, reason: "disabled at boot" }),
    });
    expect(r.ok).toBe(false);
    expect(r.world_fs_strategy.probe.result).toBe("pass");
  });
});
