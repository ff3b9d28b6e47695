/**
 * `GET /v1/doctor/world`: what the *world kernel* can enforce, measured where the agent runs
 * (the Linux host, or the Lima guest on macOS) — never inferred from the host side.
 *
 * - Landlock: support and ABI come from the real syscall
 *   `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`, which returns the
 *   highest ABI the running kernel implements (or -1: ENOSYS = not built in, EOPNOTSUPP =
 *   built in but not enabled in `lsm=`). Reading a config file or the kernel version would
 *   lie on kernels with Landlock compiled but disabled.
 * - fs strategy probe `enumeration_v1` (implemented in world/overlay.ts, shared with the
 *   world's own strategy choice): mount a real overlay (upper/work on disk, where worlds keep
 *   theirs) in a private mount namespace, create `.substrate_enum_probe` through the merged
 *   view and check that enumeration of the merged dir sees it next to a lower-layer entry, and
 *   that the upper-dir diff reports exactly that write. Some stacks (overlay on overlay, odd
 *   upper filesystems) mount fine but enumerate wrongly, which is exactly what breaks the
 *   world's fs diff. When kernel overlay fails, the same probe runs through fuse-overlayfs.
 *
 * Probe failures are facts (result "fail", ok=false); only an unexpected error (temp dir
 * cannot be created, libc cannot be opened) throws, and the route turns that into HTTP 500.
 */
import {
  type LandlockReport,
  utcSeconds,
  WorldDoctorReportV1,
  worldReportOk,
} from "../src/contract/index.ts";
import { errno, libc, NR, sys } from "../src/sys/libc.ts";
import type { OverlayStrategy } from "./world/fsdiff.ts";
import { probeFsStrategy } from "./world/overlay.ts";

const LANDLOCK_CREATE_RULESET_VERSION = 1n;
const EPERM = 1;
const ENOSYS = 38;
const EOPNOTSUPP = 95;

/** Landlock support + ABI of the running kernel, by the version query syscall. */
export function detectLandlock(): LandlockReport {
  const abi = sys(NR.landlock_create_ruleset, 0n, 0n, LANDLOCK_CREATE_RULESET_VERSION);
  if (abi > 0) return { supported: true, abi, reason: null };
  const e = errno();
  if (e === ENOSYS) {
    return { supported: false, abi: null, reason: "kernel built without Landlock (CONFIG_SECURITY_LANDLOCK is off)" };
  }
  if (e === EOPNOTSUPP) {
    return {
      supported: false,
      abi: null,
      reason: "Landlock is built in but disabled at boot (add landlock to the lsm= kernel parameter)",
    };
  }
  if (e === EPERM) {
    // The kernel never answers the VERSION query with EPERM: a seccomp filter did (container
    // runtimes such as systemd-nspawn or Docker's default profile deny unknown syscalls so).
    return {
      supported: false,
      abi: null,
      reason: "landlock syscalls are blocked by a seccomp filter (container runtime such as systemd-nspawn or Docker); allow landlock_create_ruleset, landlock_add_rule, landlock_restrict_self",
    };
  }
  return {
    supported: false,
    abi: null,
    reason: `landlock_create_ruleset(VERSION) failed: ${String(libc().strerror(e))} (errno ${e})`,
  };
}

export interface WorldDoctorOptions {
  /** Where the probe's upper/work dirs go; default: the dir real worlds use (overlay.ts). */
  baseDir?: string;
  strategies?: OverlayStrategy[];
  now?: () => Date;
  /** Tests only: replace the syscall (the route always uses the real one). */
  landlock?: () => LandlockReport;
}

/** Builds the `GET /v1/doctor/world` body. Throws only on internal errors (→ HTTP 500). */
export async function collectWorldDoctorReport(opts: WorldDoctorOptions = {}): Promise<WorldDoctorReportV1> {
  const collected = opts.now?.() ?? new Date();
  const landlock = (opts.landlock ?? detectLandlock)();
  // One probe implementation, shared with the world's own strategy choice (world/overlay.ts).
  const fs = await probeFsStrategy(opts);
  const draft = {
    schema_version: 1 as const,
    collected_at_utc: utcSeconds(collected),
    landlock,
    world_fs_strategy: fs.world_fs_strategy,
  };
  // Parse: a report that breaks its own ok rule must never leave the agent.
  return WorldDoctorReportV1.parse({ ...draft, ok: worldReportOk(draft) });
}
