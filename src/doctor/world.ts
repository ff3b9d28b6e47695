/**
 * `substrate world doctor`: host block (same probes as `host doctor`) + the agent's own
 * `GET /v1/doctor/world` report, composed into WorldDoctorEnvelopeV1.
 *
 * World disabled by the effective config → short-circuit: no socket probe, no systemd query,
 * no agent call, `world.status = "disabled"`, exit 4.
 */
import {
  ErrorBody,
  WorldDoctorEnvelopeV1,
  WorldDoctorReportV1,
  type WorldDoctorWorldBlock,
} from "../contract/index.ts";
import type { WorldSettings } from "./config.ts";
import { EXIT, probeHost } from "./host.ts";
import { enableFix } from "./linux.ts";
import { guestCurl, splitCurlStatus } from "./macos.ts";
import { type DoctorLine, fail, info, pass, renderWorldText, warn } from "./render.ts";
import type { HostSystem } from "./system.ts";

export type WorldFetch = { kind: "report"; report: WorldDoctorReportV1 } | { kind: "unreachable"; message: string };
/** How the host reaches `GET /v1/doctor/world`; injectable (tests, the host proxy, other transports). */
export type WorldDoctorSource = () => Promise<WorldFetch>;

/** The agent collects the report with real mounts; give it time, but not forever. */
const WORLD_TIMEOUT_MS = 60_000;

/** Interprets one HTTP answer of the agent (status + body) as a report or an unreachable reason. */
export function interpretWorldResponse(status: number | null, body: string, transportError: string | null): WorldFetch {
  if (status === null) return { kind: "unreachable", message: transportError ?? "no response" };
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return { kind: "unreachable", message: `HTTP ${status} with a non-JSON body` };
  }
  if (status === 404) {
    // An agent from before DS0: it answers, but has no doctor route. Pushing ours fixes it.
    return { kind: "unreachable", message: "the agent does not serve GET /v1/doctor/world (older agent version)" };
  }
  if (status !== 200) {
    const err = ErrorBody.safeParse(json);
    return {
      kind: "unreachable",
      message: err.success ? `HTTP ${status} ${err.data.error.code}: ${err.data.error.message}` : `HTTP ${status}`,
    };
  }
  const r = WorldDoctorReportV1.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    return { kind: "unreachable", message: `agent report breaks WorldDoctorReportV1 at ${issue?.path.join(".") || "(root)"}: ${issue?.message}` };
  }
  return { kind: "report", report: r.data };
}

/** Linux, or any host with SUBSTRATE_WORLD_SOCKET: straight to the agent's Unix socket. */
export const unixSocketSource =
  (sys: HostSystem, socketPath: string): WorldDoctorSource =>
  async () => {
    const r = await sys.httpGetUnix(socketPath, "/v1/doctor/world", WORLD_TIMEOUT_MS);
    return interpretWorldResponse(r.status, r.body, r.error === null ? null : `cannot reach the agent at ${socketPath}: ${r.error}`);
  };

/** macOS without a host socket: ask the agent from inside the (already running) VM. */
export const limaGuestSource =
  (sys: HostSystem): WorldDoctorSource =>
  async () => {
    const r = await sys.run(guestCurl("/v1/doctor/world", WORLD_TIMEOUT_MS / 1000), { timeoutMs: WORLD_TIMEOUT_MS + 5_000 });
    const { status, body } = splitCurlStatus(r.stdout);
    const err = r.code === 0 ? null : r.stderr.trim().split("\n")[0] || r.error || `exit ${r.code}`;
    return interpretWorldResponse(r.code === 0 ? status : null, body, err === null ? null : `limactl shell curl failed: ${err}`);
  };

export function defaultWorldSource(sys: HostSystem, settings: WorldSettings): WorldDoctorSource {
  // On a Mac the agent socket lives in the guest, unless a host-side socket is named explicitly.
  if (sys.platform === "macos" && !sys.env.SUBSTRATE_WORLD_SOCKET) return limaGuestSource(sys);
  return unixSocketSource(sys, settings.socket_path);
}

export function worldLines(world: WorldDoctorWorldBlock, settings: WorldSettings, platform: HostSystem["platform"]): DoctorLine[] {
  if (world.status === "disabled") return [warn(`world: disabled (${world.message})`, enableFix(settings.enabled_source))];
  if (world.status === "unreachable") {
    const fix =
      platform === "windows"
        ? "install WSL2 (`wsl --install -d Ubuntu`) and run substrate inside it"
        : "substrate world warm   # then re-run: substrate world doctor (see `substrate host doctor` for the transport)";
    return [fail(`world agent: unreachable (${world.message})`, fix)];
  }
  const lines: DoctorLine[] = [];
  const k = world.landlock;
  if (k.supported) lines.push(pass(`landlock: supported (abi ${k.abi})`));
  else {
    lines.push(
      fail(
        `landlock: unsupported (${k.reason})`,
        platform === "macos"
          ? "use a Lima guest kernel with Landlock enabled (Ubuntu 22.04+), then: substrate world restart"
          : "add landlock to the kernel's lsm= boot parameter (e.g. lsm=landlock,lockdown,yama,apparmor,bpf) and reboot",
      ),
    );
  }
  const p = world.world_fs_strategy.probe;
  if (p.result === "pass") lines.push(pass(`world fs: overlay (fallback fuse); probe ${p.id} passed`));
  else {
    lines.push(
      fail(
        `world fs: probe ${p.id} failed: ${p.failure_reason ?? "no reason given"}`,
        "sudo modprobe overlay; sudo apt-get install -y fuse-overlayfs fuse3   # in the world's OS; keep the agent's temp dir off overlayfs",
      ),
    );
  }
  lines.push(info(`collected_at_utc: ${world.collected_at_utc}`));
  return lines;
}

export interface WorldDoctorResult {
  envelope: WorldDoctorEnvelopeV1;
  text: string;
  exitCode: number;
}

export async function runWorldDoctor(
  sys: HostSystem,
  settings: WorldSettings,
  source: WorldDoctorSource = defaultWorldSource(sys, settings),
): Promise<WorldDoctorResult> {
  const enabled = settings.world_enabled;
  const host = await probeHost(sys, settings, { probeWorld: enabled });

  let world: WorldDoctorWorldBlock;
  if (!enabled) {
    world = { status: "disabled", ok: false, message: `world isolation disabled by ${settings.enabled_source}` };
  } else if (host.report.platform === "windows") {
    world = { status: "unreachable", ok: false, message: "no world backend on Windows" };
  } else if (host.report.platform === "macos" && host.report.lima.vm_status !== "Running") {
    // Never start the VM: report why the agent cannot be reached instead.
    const why = host.report.lima.installed ? `Lima VM 'substrate' is ${host.report.lima.vm_status}` : "limactl not installed";
    world = { status: "unreachable", ok: false, message: why };
  } else {
    const f = await source();
    world =
      f.kind === "report"
        ? { ...f.report, status: f.report.ok ? "ok" : "missing_prereqs" }
        : { status: "unreachable", ok: false, message: f.message };
  }

  const envelope = WorldDoctorEnvelopeV1.parse({
    schema_version: 1,
    platform: sys.platform,
    world_enabled: enabled,
    ok: host.report.ok && world.ok,
    host: host.report,
    world,
  });
  let exitCode: number;
  if (envelope.ok) exitCode = EXIT.ok;
  else if (world.status === "disabled" || host.report.platform === "windows") exitCode = EXIT.unsupported;
  else if (world.status === "unreachable") exitCode = EXIT.unavailable;
  else exitCode = EXIT.unsupported;
  return { envelope, text: renderWorldText(host.lines, worldLines(world, settings, sys.platform)), exitCode };
}
