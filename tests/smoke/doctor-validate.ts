#!/usr/bin/env bun
/**
 * Validates the output of `substrate host doctor --json` and `substrate world doctor --json`
 * against the DS0 contract (the zod schemas themselves, so every `ok` rule is checked too),
 * the exit codes against the envelopes, and requires world.landlock.supported == true.
 *
 *   bun tests/smoke/doctor-validate.ts --platform linux|macos \
 *     --host host.json --host-rc N --world world.json --world-rc N
 *
 * Prints one PASS/FAIL line per check; exit 0 only when all pass.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { HostDoctorEnvelopeV1, WorldDoctorEnvelopeV1 } from "../../src/contract/index.ts";

const { values: a } = parseArgs({
  options: {
    platform: { type: "string" },
    host: { type: "string" },
    "host-rc": { type: "string" },
    world: { type: "string" },
    "world-rc": { type: "string" },
  },
});
if (!a.platform || !a.host || !a.world || a["host-rc"] === undefined || a["world-rc"] === undefined) {
  console.error("usage: doctor-validate.ts --platform P --host FILE --host-rc N --world FILE --world-rc N");
  process.exit(2);
}

let failed = 0;
const check = (ok: boolean, what: string, detail = "") => {
  console.log(`${ok ? "PASS" : "FAIL"}  | ${what}${ok || !detail ? "" : `: ${detail}`}`);
  if (!ok) failed++;
};
const load = (file: string): unknown => {
  try {
    return JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    return { __error: (e as Error).message };
  }
};

const hostRc = Number(a["host-rc"]);
const worldRc = Number(a["world-rc"]);
const h = HostDoctorEnvelopeV1.safeParse(load(a.host));
check(h.success, "host doctor --json is a valid HostDoctorEnvelopeV1", h.success ? "" : JSON.stringify(h.error.issues.slice(0, 3)));
const w = WorldDoctorEnvelopeV1.safeParse(load(a.world));
check(w.success, "world doctor --json is a valid WorldDoctorEnvelopeV1", w.success ? "" : JSON.stringify(w.error.issues.slice(0, 3)));

if (h.success) {
  check(h.data.platform === a.platform && h.data.host.platform === a.platform, `host platform is ${a.platform}`, h.data.platform);
  check(h.data.ok ? hostRc === 0 : hostRc === 3 || hostRc === 4, "host doctor exit code matches ok", `ok=${h.data.ok} rc=${hostRc}`);
}
if (w.success) {
  const e = w.data;
  check(e.platform === a.platform, `world platform is ${a.platform}`, e.platform);
  const want = e.ok ? 0 : e.world.status === "unreachable" ? 3 : 4;
  check(worldRc === want, "world doctor exit code matches the envelope", `status=${e.world.status} ok=${e.ok} rc=${worldRc} want=${want}`);
  check(!e.ok || (e.host.ok && e.world.ok), "world doctor ok only when host.ok && world.ok");
  const ll = e.world.status === "ok" || e.world.status === "missing_prereqs" ? e.world.landlock : null;
  check(ll?.supported === true, "world.landlock.supported == true (read by the agent from the world kernel)",
    ll === null ? `world.status=${e.world.status}${"message" in e.world ? ` (${e.world.message})` : ""}` : `reason=${ll.reason}`);
  if (ll?.supported) console.log(`INFO  | landlock abi ${ll.abi}; fs probe ${e.world.status !== "disabled" && "world_fs_strategy" in e.world ? e.world.world_fs_strategy.probe.result : "?"}`);
}
console.log(failed === 0 ? "doctor smoke: all checks passed" : `doctor smoke: ${failed} check(s) failed`);
process.exit(failed === 0 ? 0 : 1);
