/**
 * One call for the world spawner, after pivot_root: restrict this process so that every
 * command it forks inherits the restrictions (paid once per world, not per command).
 *
 * Order matters:
 *   1. no_new_privs      — required by landlock_restrict_self/seccomp without CAP_SYS_ADMIN,
 *                          and stops setuid binaries from regaining what we drop.
 *   2. Landlock          — while capabilities are intact (opening the rule paths may need
 *                          CAP_DAC_READ_SEARCH under 0700 directories).
 *   3. capabilities      — bounding set, ambient, then effective/permitted/inheritable.
 *   4. seccomp (TSYNC)   — last, because it may deny syscalls the steps above use.
 * Each layer that fails is reported in `degraded` with the reason; the others still apply.
 * Whether a degraded world may run is the caller's decision (`report.degraded.length`).
 *
 * Before calling: bind every socket and open every file the spawner itself needs later
 * outside the rw paths (Landlock checks at open/bind time; already-open fds keep working).
 */
import type { HardeningMode, HardeningReport } from "../../src/contract/hardening.ts";
import { DEFAULT_KEEP_CAPS, dropCapabilities, noNewPrivs, setNoNewPrivs } from "./capabilities.ts";
import { applyLandlock, landlockAbi } from "./landlock.ts";
import { applySeccomp } from "./seccomp.ts";
import { fsViewRwPaths } from "./fsview.ts";

/** /dev nodes commands need to write (or ioctl: terminals). Missing ones are skipped. */
export const DEFAULT_DEV_RW: readonly string[] = [
  "/dev/null",
  "/dev/zero",
  "/dev/full",
  "/dev/random",
  "/dev/urandom",
  "/dev/tty",
  "/dev/ptmx",
  "/dev/pts",
  "/dev/shm",
];

/**
 * The writable paths of a world built by rootfs.ts: the project (unless read-only; for an
 * isolated world it is the overlay mounted at the project path) and the world's scratch
 * tmpfs mounts. Pass as `landlock.rw`.
 */
export function worldRwPaths(project: string, projectReadOnly = false): string[] {
  // FSVIEW (issue 13): plus the policy's `fs.write` binds of this world (fsview.ts).
  return [...(projectReadOnly ? [] : [project]), "/tmp", "/var/tmp", "/root", "/run", ...fsViewRwPaths()];
}

export interface HardenOptions {
  mode: HardeningMode;
  /**
   * Paths writable inside the world (project or overlay merged dir, the world's /tmp).
   * DEFAULT_DEV_RW is added unless `devRw` replaces it. `rx` (read + execute) defaults to
   * ["/"]: everything else readable and executable. Landlock only ever ADDS rights along a
   * path, so `ro` (read, no exec) is only meaningful with an `rx` narrower than "/".
   * `false`: skip Landlock entirely (reported as degraded).
   */
  landlock: { rw: string[]; ro?: string[]; rx?: string[]; devRw?: string[] } | false;
  /** Capabilities to keep (default DEFAULT_KEEP_CAPS). */
  keepCaps?: readonly string[];
  /** Issue 14.1: pids no command may signal (PID 1, the spawner); see seccomp.ts. */
  protectPids?: readonly number[];
  /** Policy opt-in for debuggers: ptrace and process_vm_* allowed (docs/SECURITY.md). */
  allowPtrace?: boolean;
}

const msg = (e: unknown): string => (e instanceof Error ? e.message : String(e));

export function hardenSelf(opts: HardenOptions): HardeningReport {
  const t0 = performance.now();
  const degraded: string[] = [];
  const report: HardeningReport = {
    mode: opts.mode,
    no_new_privs: false,
    capabilities: { applied: false, kept: [] },
    landlock: { applied: false, abi: null, rw: [], skipped: [], scoped: false },
    seccomp: { applied: false, action: null, instructions: 0 },
    degraded,
    duration_ms: 0,
  };

  try {
    setNoNewPrivs();
    report.no_new_privs = noNewPrivs();
  } catch (e) {
    degraded.push(`no_new_privs: ${msg(e)}; setuid programs in the world can gain privileges`);
  }

  if (opts.landlock === false) {
    report.landlock.abi = landlockAbi();
    degraded.push("landlock: disabled by configuration; writes are bounded only by the world's mounts");
  } else {
    const rw = [...opts.landlock.rw, ...(opts.landlock.devRw ?? DEFAULT_DEV_RW)];
    try {
      const r = applyLandlock({ rw, ro: opts.landlock.ro, rx: opts.landlock.rx ?? ["/"] });
      report.landlock = {
        applied: true,
        abi: r.abi,
        rw: r.rules.filter((x) => x.access === "rw").map((x) => x.path),
        skipped: r.skipped,
        scoped: r.scoped,
      };
    } catch (e) {
      report.landlock.abi = landlockAbi();
      degraded.push(`landlock: ${msg(e)}`);
    }
  }

  try {
    const r = dropCapabilities(opts.keepCaps ?? DEFAULT_KEEP_CAPS);
    report.capabilities = { applied: true, kept: r.kept, bounding: r.bounding };
  } catch (e) {
    degraded.push(`capabilities: ${msg(e)}; commands keep the spawner's capabilities`);
  }

  try {
    const p = applySeccomp(opts.mode, { protectPids: opts.protectPids, allowPtrace: opts.allowPtrace });
    report.seccomp = { applied: true, action: p.riskyAction, instructions: p.insns.length };
    if (p.riskyAction === "allow") {
      degraded.push("seccomp: this kernel has no SECCOMP_RET_LOG (actions_avail lacks 'log'); risky syscalls are allowed without a log");
    }
  } catch (e) {
    degraded.push(`seccomp: ${msg(e)}; risky syscalls (mount, bpf, ...) are neither logged nor blocked`);
  }

  report.duration_ms = Math.round((performance.now() - t0) * 1000) / 1000;
  return report;
}
