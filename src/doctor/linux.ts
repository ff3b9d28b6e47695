/**
 * Linux host doctor probes. Reads /proc, /sys and /dev, looks binaries up on PATH, asks
 * systemd (read-only `systemctl show`, only when systemd is PID 1) and GETs /v1/capabilities
 * on the world socket. No modprobe, no mkdir, no agent start: a doctor must not change the
 * machine it diagnoses.
 */
import { join } from "node:path";
import { Capabilities, LinuxHostReport, linuxHostPrereqsOk, type SystemdUnitState } from "../contract/index.ts";
import type { WorldSettings } from "./config.ts";
import { rootlessSocketPath } from "../config.ts";
import { type DoctorLine, fail, info, pass, warn } from "./render.ts";
import type { HostSystem } from "./system.ts";

export const AGENT_SOCKET_UNIT = "substrate-world-agent.socket";
export const AGENT_SERVICE_UNIT = "substrate-world-agent.service";
const PROBE_TIMEOUT_MS = 3_000;

export interface HostProbeOptions {
  /** false: world disabled → no socket probe, no systemd query, no agent call (DS0 short-circuit). */
  probeWorld: boolean;
}

export interface HostProbe<R> {
  report: R;
  lines: DoctorLine[];
  /** A dependency needed to even compute the report is missing (exit 3), e.g. limactl on macOS. */
  dependencyMissing: string | null;
}

/** Kernel overlay usable: registered, or a module the kernel will autoload at first mount. */
function overlayPresent(sys: HostSystem): boolean {
  const fs = sys.readText("/proc/filesystems") ?? "";
  if (/\toverlay$/m.test(fs)) return true;
  const rel = sys.readText("/proc/sys/kernel/osrelease")?.trim();
  return rel !== undefined && sys.exists(`/lib/modules/${rel}/kernel/fs/overlayfs`);
}

export type CgroupLayout = { kind: "unified" | "hybrid" | "v1" | "none"; v2Mount: string | null };

/** From /proc/self/mountinfo: where (if anywhere) a cgroup2 hierarchy is mounted. */
export function cgroupLayout(mountinfo: string): CgroupLayout {
  let v2Mount: string | null = null;
  let v1 = false;
  for (const line of mountinfo.split("\n")) {
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const fstype = line.slice(sep + 3).split(" ")[0];
    const mountPoint = line.slice(0, sep).split(" ")[4] ?? "";
    if (fstype === "cgroup2" && (v2Mount === null || mountPoint === "/sys/fs/cgroup")) v2Mount = mountPoint;
    if (fstype === "cgroup") v1 = true;
  }
  if (v2Mount === "/sys/fs/cgroup") return { kind: "unified", v2Mount };
  if (v2Mount !== null) return { kind: "hybrid", v2Mount };
  return { kind: v1 ? "v1" : "none", v2Mount: null };
}

/** Same layout as the world agent's state dirs: root → /var/lib/substrate, users → runtime dir. */
function stateRoot(sys: HostSystem, leaf: "overlay" | "copydiff"): string {
  if (sys.euid === 0) return `/var/lib/substrate/${leaf}`;
  const xdg = sys.env.XDG_RUNTIME_DIR;
  if (xdg) return join(xdg, "substrate", leaf);
  if (sys.exists(`/run/user/${sys.euid}`)) return `/run/user/${sys.euid}/substrate/${leaf}`;
  return `/tmp/substrate-${sys.euid}-${leaf}`;
}

/** Parses `systemctl show --property=...` output for several units (blank-line separated). */
export function parseSystemctlShow(out: string): SystemdUnitState[] {
  const units: SystemdUnitState[] = [];
  for (const block of out.split(/\n\s*\n/)) {
    const kv = new Map<string, string[]>();
    for (const line of block.split("\n")) {
      const i = line.indexOf("=");
      if (i <= 0) continue;
      const k = line.slice(0, i);
      kv.set(k, [...(kv.get(k) ?? []), line.slice(i + 1)]);
    }
    const id = kv.get("Id")?.[0];
    if (!id || kv.get("LoadState")?.[0] === "not-found") continue;
    units.push({
      name: id,
      active_state: kv.get("ActiveState")?.[0] ?? "",
      sub_state: kv.get("SubState")?.[0] ?? "",
      unit_file_state: kv.get("UnitFileState")?.[0] ?? "",
      listens: (kv.get("Listen") ?? []).filter((l) => l !== ""),
    });
  }
  return units;
}

async function systemdUnits(
  sys: HostSystem,
): Promise<{ socket: SystemdUnitState | null; service: SystemdUnitState | null; error: string | null }> {
  // sd_booted(3): systemd is PID 1 iff /run/systemd/system exists. Asking systemctl otherwise
  // only yields "System has not been booted with systemd as init system".
  if (!sys.exists("/run/systemd/system")) {
    return {
      socket: null,
      service: null,
      error: "systemd is not PID 1 on this host (no /run/systemd/system): socket activation unavailable",
    };
  }
  if (sys.which("systemctl") === null) return { socket: null, service: null, error: "systemctl not found on PATH" };
  const r = await sys.run([
    "systemctl",
    "show",
    "--no-pager",
    "--property=Id,LoadState,ActiveState,SubState,UnitFileState,Listen",
    AGENT_SOCKET_UNIT,
    AGENT_SERVICE_UNIT,
  ]);
  if (r.code !== 0) {
    const why = r.error ?? (r.stderr.trim().split("\n")[0] || `exit ${r.code}`);
    return { socket: null, service: null, error: `systemctl show failed: ${why}` };
  }
  const units = parseSystemctlShow(r.stdout);
  return {
    socket: units.find((u) => u.name === AGENT_SOCKET_UNIT) ?? null,
    service: units.find((u) => u.name === AGENT_SERVICE_UNIT) ?? null,
    error: null,
  };
}

/** connect + GET /v1/capabilities; ok only for a 200 whose body satisfies the contract. */
export async function probeCapabilities(sys: HostSystem, socketPath: string): Promise<string | null> {
  const r = await sys.httpGetUnix(socketPath, "/v1/capabilities", PROBE_TIMEOUT_MS);
  if (r.status === null) return r.error ?? "no response";
  if (!r.ok) return `HTTP ${r.status}: ${r.body.slice(0, 200)}`;
  let json: unknown;
  try {
    json = JSON.parse(r.body);
  } catch {
    return "capabilities response is not JSON";
  }
  const parsed = Capabilities.safeParse(json);
  if (!parsed.success) return `capabilities response breaks the contract: ${parsed.error.issues[0]?.message ?? "invalid"}`;
  return null;
}

function probeFix(err: string, socketPath: string, activated: boolean): string {
  if (/EACCES|permission denied/i.test(err)) {
    return `sudo usermod -aG substrate "$USER"   # then log out and in again (socket ${socketPath} is 0660 root:substrate)`;
  }
  return activated
    ? `sudo systemctl restart ${AGENT_SOCKET_UNIT} && journalctl -u ${AGENT_SERVICE_UNIT} -n 50`
    : "substrate world restart   # replaces a stale socket and restarts the agent";
}

export async function probeLinuxHost(
  sys: HostSystem,
  settings: WorldSettings,
  opts: HostProbeOptions,
): Promise<HostProbe<LinuxHostReport>> {
  const lines: DoctorLine[] = [];

  if (settings.world_enabled) lines.push(pass(`world isolation: enabled (${settings.enabled_source})`));
  else {
    lines.push(
      warn(
        `world isolation: disabled by ${settings.enabled_source}`,
        enableFix(settings.enabled_source),
      ),
    );
  }

  const overlay = overlayPresent(sys);
  const fuse = { dev: sys.exists("/dev/fuse"), bin: sys.which("fuse-overlayfs") !== null };
  const fuseOk = fuse.dev && fuse.bin;
  if (overlay) lines.push(pass("overlayfs: present"));
  else if (fuseOk) lines.push(warn("overlayfs: not available; worlds fall back to fuse-overlayfs", "sudo modprobe overlay"));
  else lines.push(fail("overlayfs: not available (and no fuse-overlayfs fallback)", "sudo modprobe overlay"));
  if (fuseOk) lines.push(pass("fuse-overlayfs: /dev/fuse present and binary found"));
  else {
    const missing = [fuse.dev ? null : "/dev/fuse", fuse.bin ? null : "fuse-overlayfs binary"].filter(Boolean).join(" and ");
    const fix = [fuse.bin ? null : "sudo apt-get install -y fuse-overlayfs fuse3", fuse.dev ? null : "sudo modprobe fuse"]
      .filter(Boolean)
      .join(" && ");
    if (overlay) lines.push(warn(`fuse-overlayfs fallback: missing ${missing}`, fix));
    else lines.push(fail(`fuse-overlayfs: missing ${missing}`, fix));
  }

  const cg = cgroupLayout(sys.readText("/proc/self/mountinfo") ?? "");
  const cgroupV2 = cg.v2Mount !== null;
  if (cg.kind === "unified") lines.push(pass("cgroup v2: unified hierarchy at /sys/fs/cgroup"));
  else if (cg.kind === "hybrid") {
    lines.push(
      warn(
        `cgroup v2: hybrid layout (cgroup2 at ${cg.v2Mount}, resource controllers on v1); world limits use the v1 controllers`,
        "optional, for pure cgroup v2: boot with systemd.unified_cgroup_hierarchy=1 (kernel command line) and reboot",
      ),
    );
  } else {
    lines.push(
      fail(
        `cgroup v2: no cgroup2 hierarchy mounted${cg.kind === "v1" ? " (cgroup v1 only)" : ""}`,
        "sudo mount -t cgroup2 none /sys/fs/cgroup   # or boot with systemd.unified_cgroup_hierarchy=1",
      ),
    );
  }

  const nft = sys.which("nft") !== null;
  if (nft) lines.push(pass("nft: present"));
  else lines.push(fail("nft: not found (network allowlists need nftables)", "sudo apt-get install -y nftables"));

  const dmesg = sys.readText("/proc/sys/kernel/dmesg_restrict")?.trim() || "n/a";
  const overlayRoot = stateRoot(sys, "overlay");
  const copydiffRoot = stateRoot(sys, "copydiff");
  lines.push(info(`dmesg_restrict=${dmesg}`));
  lines.push(info(`overlay_root: ${overlayRoot}`));
  lines.push(info(`copydiff_root: ${copydiffRoot}`));
  lines.push(info(`world_fs_mode: ${settings.fs_mode}`));
  lines.push(info(`world_fs_isolation: ${settings.fs_isolation}`));
  lines.push(info(`world_fs_require_world: ${settings.require_world}`));

  // World socket: where the agent listens, who manages it, whether it answers.
  const socketPath = settings.socket_path;
  const socketExists = sys.isSocket(socketPath);
  let units: Awaited<ReturnType<typeof systemdUnits>> = { socket: null, service: null, error: null };
  let probeError: string | null;
  if (!opts.probeWorld) {
    probeError = "not probed: world isolation is disabled";
  } else {
    units = await systemdUnits(sys);
    probeError = socketExists ? await probeCapabilities(sys, socketPath) : `no socket at ${socketPath}`;
  }
  const activated = units.socket?.active_state === "active";
  const mode = activated ? "socket_activation" : "manual";

  if (opts.probeWorld) {
    if (units.error !== null) lines.push(info(`systemd: ${units.error}`));
    if (activated) {
      lines.push(pass(`agent socket: systemd socket activation (${AGENT_SOCKET_UNIT} active, listens ${units.socket!.listens.join(", ") || "?"})`));
    } else if (units.socket !== null) {
      lines.push(
        warn(
          `agent socket: ${AGENT_SOCKET_UNIT} installed but ${units.socket.active_state || "unknown"}`,
          `sudo systemctl enable --now ${AGENT_SOCKET_UNIT}`,
        ),
      );
    } else {
      lines.push(info("agent socket: manual mode (no systemd socket unit)"));
    }
    if (socketExists) lines.push(pass(`agent socket: present at ${socketPath}`));
    else if (socketPath !== "/run/substrate.sock" && socketPath === rootlessSocketPath(sys.env as NodeJS.ProcessEnv, sys.home)) {
      // The agent that serves this user (src/config.ts defaultSocketPath): the rootless one,
      // which `substrate -c` starts on demand — not a failure, and no sudo needed.
      lines.push(warn(`agent socket: your rootless agent is not running (${socketPath}); substrate -c starts it on demand`, "substrate world warm"));
    } else {
      lines.push(
        fail(
          `agent socket: no listener at ${socketPath}`,
          units.socket !== null
            ? `sudo systemctl enable --now ${AGENT_SOCKET_UNIT}`
            : `substrate world warm   # or run an agent yourself: sudo substrate-world-agent --listen ${socketPath}`,
        ),
      );
    }
    if (socketExists) {
      if (probeError === null) lines.push(pass("agent socket: responded to GET /v1/capabilities"));
      else lines.push(fail(`agent socket: GET /v1/capabilities failed: ${probeError}`, probeFix(probeError, socketPath, activated)));
    }
  } else {
    lines.push(info(`agent socket: ${socketPath} not probed (world isolation disabled)`));
  }

  const draft = {
    platform: "linux" as const,
    overlay_present: overlay,
    fuse,
    cgroup_v2: cgroupV2,
    nft_present: nft,
    dmesg_restrict: dmesg,
    overlay_root: overlayRoot,
    copydiff_root: copydiffRoot,
    world_fs_mode: settings.fs_mode,
    world_fs_isolation: settings.fs_isolation,
    world_fs_require_world: settings.require_world,
    world_socket: {
      mode,
      socket_path: socketPath,
      socket_exists: socketExists,
      probe_ok: probeError === null,
      probe_error: probeError,
      systemd_error: units.error,
      systemd_socket: units.socket,
      systemd_service: units.service,
    } as const,
  };
  const report = LinuxHostReport.parse({ ...draft, ok: settings.world_enabled && linuxHostPrereqsOk(draft) });
  return { report, lines, dependencyMissing: null };
}

/** The exact step that re-enables the world, given what disabled it. */
export function enableFix(source: string): string {
  if (source === "--no-world") return "re-run without --no-world (or pass --world)";
  if (source.startsWith("SUBSTRATE_WORLD=")) return "unset SUBSTRATE_WORLD   # or: export SUBSTRATE_WORLD=enabled";
  if (source.includes("world.enabled")) return `set \`enabled = true\` under [world] in ${source.split(" ")[0]}`;
  return "pass --world";
}
