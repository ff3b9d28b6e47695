/**
 * `GET /v1/doctor/world`: what the *world kernel* can enforce, measured where the agent runs
 * (the Linux host, or the Lima guest on macOS) — never inferred from the host side.
 *
 * - Landlock: support and ABI come from the real syscall
 *   `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`, which returns the
 *   highest ABI the running kernel implements (or -1: ENOSYS = not built in, EOPNOTSUPP =
 *   built in but not enabled in `lsm=`). Reading a config file or the kernel version would
 *   lie on kernels with Landlock compiled but disabled.
 * - fs strategy probe `enumeration_v1`: mount a real overlay (upper/work on disk) in a private
 *   mount namespace, create `.substrate_enum_probe` through the merged view and check that
 *   directory enumeration of the merged dir sees it next to a lower-layer entry. Some
 *   filesystem stacks (overlay on overlay, upper on odd filesystems) mount fine but enumerate
 *   wrongly, which is exactly what breaks the world's fs diff; the probe catches that. When
 *   kernel overlay fails, the same probe runs through fuse-overlayfs (the fallback).
 *
 * Probe failures are facts (result "fail", ok=false); only an unexpected error (temp dir
 * cannot be created, libc cannot be opened) throws, and the route turns that into HTTP 500.
 */
import { mkdtemp, mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ENUM_PROBE_FILE,
  ENUM_PROBE_ID,
  type LandlockReport,
  utcSeconds,
  WorldDoctorReportV1,
  worldReportOk,
} from "../src/contract/index.ts";
import { errno, libc, NR, sys } from "../src/sys/libc.ts";

const LANDLOCK_CREATE_RULESET_VERSION = 1n;
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
  return {
    supported: false,
    abi: null,
    reason: `landlock_create_ruleset(VERSION) failed: ${String(libc().strerror(e))} (errno ${e})`,
  };
}

export type FsStrategy = "overlay" | "fuse";

export interface FsProbeOutcome {
  result: "pass" | "fail";
  failure_reason: string | null;
  /** The strategy that passed (null when both failed). Logged, not part of the contract. */
  used: FsStrategy | null;
}

const LOWER_MARKER = "substrate_lower_marker";
const PROBE_TIMEOUT_MS = 15_000;

/*
 * Runs inside `unshare --mount --propagation private --pid --fork --kill-child`: the overlay is
 * visible only to this child, so nothing leaks into the agent's (or host's) mount table even if
 * the script dies half-way; and --kill-child + the new PID namespace guarantee that a
 * fuse-overlayfs daemon dies with the probe (a surviving daemon would pin the namespace).
 * Paths arrive as positional parameters, never interpolated into the script.
 */
const MOUNT_CMD: Record<FsStrategy, string> = {
  overlay:
    'mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3,redirect_dir=off,metacopy=off,index=off" "$4"',
  fuse: 'fuse-overlayfs -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4"',
};
const probeScript = (s: FsStrategy): string =>
  [
    "set -e",
    `${MOUNT_CMD[s]}`,
    `trap 'umount "$4" 2>/dev/null || umount -l "$4" 2>/dev/null || true' EXIT`,
    `: > "$4/${ENUM_PROBE_FILE}"`,
    // One name per line, dotfiles included: the enumeration we check.
    'ls -A1 "$4"',
  ].join("\n");

async function runProbe(s: FsStrategy, dir: string): Promise<string | null> {
  const base = join(dir, s);
  const [lower, upper, work, merged] = ["lower", "upper", "work", "merged"].map((d) => join(base, d));
  for (const d of [lower, upper, work, merged]) await mkdir(d!, { recursive: true });
  await writeFile(join(lower!, LOWER_MARKER), "lower\n");

  if (s === "fuse" && Bun.which("fuse-overlayfs") === null) return "fuse-overlayfs not found on PATH";
  if (Bun.which("unshare") === null) return "unshare (util-linux) not found on PATH";

  const proc = Bun.spawn(
    [
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "--pid",
      "--fork",
      "--kill-child",
      "--",
      "/bin/sh",
      "-c",
      probeScript(s),
      "substrate-enum-probe",
      lower!,
      upper!,
      work!,
      merged!,
    ],
    { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
  );
  const timer = setTimeout(() => proc.kill("SIGKILL"), PROBE_TIMEOUT_MS);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  if (proc.signalCode !== null) return `${s} probe killed (${proc.signalCode}) after ${PROBE_TIMEOUT_MS} ms`;
  if (code !== 0) {
    // mount(8) errors span lines; keep the reason on one line for JSON consumers.
    const why = stderr.replace(/\s+/g, " ").trim() || "no stderr";
    return `${s} mount/probe failed (exit ${code}): ${why}`;
  }

  const names = new Set(stdout.split("\n").filter((l) => l !== ""));
  if (!names.has(ENUM_PROBE_FILE)) {
    return `${s}: ${ENUM_PROBE_FILE} created through the merged dir but missing from its enumeration`;
  }
  if (!names.has(LOWER_MARKER)) return `${s}: lower-layer entry missing from the merged enumeration`;
  // The write must have landed in the upper dir on disk (that is where the fs diff reads).
  const upperNames = await readdir(upper!);
  if (!upperNames.includes(ENUM_PROBE_FILE)) return `${s}: ${ENUM_PROBE_FILE} did not reach the upper dir`;
  return null;
}

/** Kernel overlay first, fuse-overlayfs as the fallback; each in a throw-away temp dir. */
export async function probeFsStrategy(
  opts: { tmpRoot?: string; strategies?: FsStrategy[] } = {},
): Promise<FsProbeOutcome> {
  const dir = await mkdtemp(join(opts.tmpRoot ?? tmpdir(), "substrate-doctor-"));
  const reasons: string[] = [];
  try {
    for (const s of opts.strategies ?? ["overlay", "fuse"]) {
      const reason = await runProbe(s, dir);
      if (reason === null) return { result: "pass", failure_reason: null, used: s };
      reasons.push(reason);
    }
    return { result: "fail", failure_reason: reasons.join("; ") || "no strategy probed", used: null };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface WorldDoctorOptions {
  tmpRoot?: string;
  strategies?: FsStrategy[];
  now?: () => Date;
  /** Tests only: replace the syscall (the route always uses the real one). */
  landlock?: () => LandlockReport;
}

/** Builds the `GET /v1/doctor/world` body. Throws only on internal errors (→ HTTP 500). */
export async function collectWorldDoctorReport(opts: WorldDoctorOptions = {}): Promise<WorldDoctorReportV1> {
  const collected = opts.now?.() ?? new Date();
  const landlock = (opts.landlock ?? detectLandlock)();
  const fs = await probeFsStrategy(opts);
  const draft = {
    schema_version: 1 as const,
    collected_at_utc: utcSeconds(collected),
    landlock,
    world_fs_strategy: {
      primary: "overlay" as const,
      fallback: "fuse" as const,
      probe: {
        id: ENUM_PROBE_ID,
        probe_file: ENUM_PROBE_FILE,
        result: fs.result,
        failure_reason: fs.failure_reason,
      },
    },
  };
  // Parse: a report that breaks its own ok rule must never leave the agent.
  return WorldDoctorReportV1.parse({ ...draft, ok: worldReportOk(draft) });
}
