/** Windows host doctor: explicitly unsupported (DS0: ok=false, status=unsupported, exit 4). */
import { WindowsHostReport } from "../contract/index.ts";
import type { HostProbe } from "./linux.ts";
import { fail } from "./render.ts";

export const WINDOWS_MESSAGE =
  "Substrate worlds are not supported on native Windows; run substrate inside WSL2 (a Linux distribution), where the Linux host doctor applies";

export function probeWindowsHost(): HostProbe<WindowsHostReport> {
  return {
    report: WindowsHostReport.parse({ platform: "windows", ok: false, status: "unsupported", message: WINDOWS_MESSAGE }),
    lines: [fail("platform: Windows is not supported", "install WSL2 (`wsl --install -d Ubuntu`) and run substrate inside it")],
    dependencyMissing: null,
  };
}
