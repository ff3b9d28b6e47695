/** `substrate host doctor`: pick the platform variant, wrap it in HostDoctorEnvelopeV1, map exit codes (DS0). */
import { type HostDoctorReportV1, HostDoctorEnvelopeV1 } from "../contract/index.ts";
import type { WorldSettings } from "./config.ts";
import { type HostProbe, type HostProbeOptions, probeLinuxHost } from "./linux.ts";
import { probeMacHost } from "./macos.ts";
import { renderHostText } from "./render.ts";
import type { HostSystem } from "./system.ts";
import { probeWindowsHost } from "./windows.ts";

/** docs/EXIT_CODE_TAXONOMY.md */
export const EXIT = { ok: 0, internal: 1, usage: 2, unavailable: 3, unsupported: 4 } as const;

export async function probeHost(
  sys: HostSystem,
  settings: WorldSettings,
  opts: HostProbeOptions,
): Promise<HostProbe<HostDoctorReportV1>> {
  switch (sys.platform) {
    case "linux":
      return probeLinuxHost(sys, settings, opts);
    case "macos":
      return probeMacHost(sys, settings, opts);
    case "windows":
      return probeWindowsHost();
  }
}

export interface HostDoctorResult {
  envelope: HostDoctorEnvelopeV1;
  text: string;
  exitCode: number;
}

export async function runHostDoctor(sys: HostSystem, settings: WorldSettings): Promise<HostDoctorResult> {
  // Host doctor always probes (read-only); world_enabled=false only makes ok=false.
  const probe = await probeHost(sys, settings, { probeWorld: true });
  const envelope = HostDoctorEnvelopeV1.parse({
    schema_version: 1,
    platform: sys.platform,
    world_enabled: settings.world_enabled,
    ok: probe.report.ok,
    host: probe.report,
  });
  const exitCode = envelope.ok ? EXIT.ok : probe.dependencyMissing !== null ? EXIT.unavailable : EXIT.unsupported;
  return { envelope, text: renderHostText(probe.lines), exitCode };
}
