import { expect, test } from "bun:test";
import { HardeningReport } from "../../../src/contract/hardening.ts";

test("HardeningReport round-trips and rejects unknown fields", () => {
  const r: HardeningReport = {
    mode: "isolated",
    no_new_privs: true,
    capabilities: { applied: true, kept: ["chown"], bounding: "0000000000000001" },
    landlock: { applied: true, abi: 7, rw: ["/work/p", "/tmp"], skipped: ["/dev/shm"], scoped: true },
    seccomp: { applied: true, action: "errno", instructions: 55 },
    degraded: [],
    duration_ms: 1.25,
  };
  expect(HardeningReport.parse(JSON.parse(JSON.stringify(r)))).toEqual(r);
  expect(HardeningReport.safeParse({ ...r, extra: 1 }).success).toBe(false);
  expect(HardeningReport.safeParse({ ...r, landlock: { ...r.landlock, abi: null, applied: false } }).success).toBe(true);
});
