/**
 * The doctors as a library, for consumers that read doctor results (`substrate world status`,
 * `health`, `world verify`): the same validated envelopes the commands print with `--json`
 * (`HostDoctorEnvelopeV1`, `WorldDoctorEnvelopeV1`), plus the text and the DS0 exit code.
 * Read `envelope.host` / `envelope.world`; never parse the text.
 */
import { resolveWorldSettings } from "./config.ts";
import { type HostDoctorResult, runHostDoctor } from "./host.ts";
import { realSystem } from "./system.ts";
import { runWorldDoctor, type WorldDoctorResult } from "./world.ts";

export { EXIT, type HostDoctorResult, runHostDoctor } from "./host.ts";
export { runWorldDoctor, type WorldDoctorResult, type WorldDoctorSource } from "./world.ts";
export { type WorldSettings, resolveWorldSettings } from "./config.ts";
export { type HostSystem, realSystem } from "./system.ts";

/** `substrate host doctor` on this machine (worldFlag: --world → true, --no-world → false). */
export async function hostDoctor(opts: { worldFlag?: boolean } = {}): Promise<HostDoctorResult> {
  const sys = realSystem();
  return runHostDoctor(sys, resolveWorldSettings(sys, { world: opts.worldFlag }));
}

/** `substrate world doctor` on this machine. */
export async function worldDoctor(opts: { worldFlag?: boolean } = {}): Promise<WorldDoctorResult> {
  const sys = realSystem();
  return runWorldDoctor(sys, resolveWorldSettings(sys, { world: opts.worldFlag }));
}
