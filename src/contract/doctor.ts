/**
 * Doctor scopes (spec DS0): `substrate host doctor --json`, `substrate world doctor --json`
 * and the agent's `GET /v1/doctor/world`.
 *
 * Every `ok` rule of the spec is a refinement here, so a report that contradicts its own
 * facts (ok=true with nft missing, world.ok=true with Landlock unsupported, an envelope whose
 * `ok` is not `host.ok && world.ok` ...) cannot be parsed, and therefore cannot be emitted:
 * the producers build their JSON through these schemas.
 */
import { z } from "zod";
import { FsIsolation, FsMode } from "./world.ts";

export const DOCTOR_SCHEMA_VERSION = 1 as const;
const SchemaVersion = z.literal(DOCTOR_SCHEMA_VERSION);

/** RFC3339, UTC, seconds precision, `Z` suffix: `2026-01-08T00:00:00Z`. */
export const UtcSeconds = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/, "expected RFC3339 UTC seconds, e.g. 2026-01-08T00:00:00Z")
  .refine((s) => !Number.isNaN(Date.parse(s)), "not a valid date");

/** `new Date()` → `2026-01-08T00:00:00Z` (milliseconds dropped, as the contract wants). */
export const utcSeconds = (d: Date = new Date()): string => `${d.toISOString().slice(0, 19)}Z`;

export const DoctorPlatform = z.enum(["linux", "macos", "windows"]);
export type DoctorPlatform = z.infer<typeof DoctorPlatform>;

// ---------------------------------------------------------------------------------------------
// World (agent) report
// ---------------------------------------------------------------------------------------------

export const LandlockReport = z
  .strictObject({
    supported: z.boolean(),
    abi: z.number().int().positive().nullable(),
    reason: z.string().min(1).nullable(),
  })
  .refine((l) => (l.supported ? l.abi !== null : l.abi === null), {
    message: "landlock.abi must be an integer when supported and null otherwise",
    path: ["abi"],
  })
  .refine((l) => (l.supported ? l.reason === null : l.reason !== null), {
    message: "landlock.reason must be a string when unsupported and null otherwise",
    path: ["reason"],
  });
export type LandlockReport = z.infer<typeof LandlockReport>;

export const ENUM_PROBE_ID = "enumeration_v1" as const;
export const ENUM_PROBE_FILE = ".substrate_enum_probe" as const;

export const FsProbeResult = z.enum(["pass", "fail"]);
export const WorldFsProbe = z
  .strictObject({
    id: z.literal(ENUM_PROBE_ID),
    probe_file: z.literal(ENUM_PROBE_FILE),
    result: FsProbeResult,
    failure_reason: z.string().min(1).nullable(),
  })
  .refine((p) => p.result === "fail" || p.failure_reason === null, {
    message: "failure_reason must be null when result is pass",
    path: ["failure_reason"],
  });
export type WorldFsProbe = z.infer<typeof WorldFsProbe>;

export const WorldFsStrategy = z.strictObject({
  primary: z.literal("overlay"),
  fallback: z.literal("fuse"),
  probe: WorldFsProbe,
});
export type WorldFsStrategy = z.infer<typeof WorldFsStrategy>;

/** The spec's `ok` rule for the agent report. */
export const worldReportOk = (r: { landlock: { supported: boolean }; world_fs_strategy: { probe: { result: string } } }): boolean =>
  r.landlock.supported && r.world_fs_strategy.probe.result === "pass";

const worldReportShape = {
  schema_version: SchemaVersion,
  ok: z.boolean(),
  collected_at_utc: UtcSeconds,
  landlock: LandlockReport,
  world_fs_strategy: WorldFsStrategy,
};
const okRule = { message: "ok must be true iff landlock.supported and probe.result == pass", path: ["ok"] };

/** `GET /v1/doctor/world` response body. */
export const WorldDoctorReportV1 = z.strictObject(worldReportShape).refine((r) => r.ok === worldReportOk(r), okRule);
export type WorldDoctorReportV1 = z.infer<typeof WorldDoctorReportV1>;

// ---------------------------------------------------------------------------------------------
// Host reports
// ---------------------------------------------------------------------------------------------

/** `systemctl show` facts about one unit (socket or service). */
export const SystemdUnitState = z.strictObject({
  name: z.string().min(1),
  active_state: z.string(),
  sub_state: z.string(),
  unit_file_state: z.string(),
  /** `Listen=` of a .socket unit, e.g. `/run/substrate.sock (Stream)`; empty for services. */
  listens: z.array(z.string()),
});
export type SystemdUnitState = z.infer<typeof SystemdUnitState>;

export const WorldSocketMode = z.enum(["socket_activation", "manual"]);
export const WorldSocketReport = z
  .strictObject({
    mode: WorldSocketMode,
    socket_path: z.string().min(1),
    socket_exists: z.boolean(),
    probe_ok: z.boolean(),
    probe_error: z.string().min(1).nullable(),
    systemd_error: z.string().min(1).nullable(),
    systemd_socket: SystemdUnitState.nullable(),
    systemd_service: SystemdUnitState.nullable(),
  })
  .refine((s) => (s.probe_ok ? s.probe_error === null : s.probe_error !== null), {
    message: "probe_error must be null when probe_ok and a reason otherwise",
    path: ["probe_error"],
  })
  .refine((s) => !s.probe_ok || s.socket_exists, {
    message: "probe_ok cannot be true when the socket does not exist",
    path: ["probe_ok"],
  });
export type WorldSocketReport = z.infer<typeof WorldSocketReport>;

const fsSettings = {
  world_fs_mode: FsMode,
  world_fs_isolation: FsIsolation,
  world_fs_require_world: z.boolean(),
};

/**
 * Host facts the Linux `ok` rule needs, apart from `world_enabled` which lives in the
 * envelope. `ok` = `world_enabled && linuxHostPrereqsOk(host)`.
 */
export const linuxHostPrereqsOk = (h: {
  world_socket: { socket_exists: boolean; probe_ok: boolean };
  overlay_present: boolean;
  fuse: { dev: boolean; bin: boolean };
  cgroup_v2: boolean;
  nft_present: boolean;
}): boolean =>
  h.world_socket.socket_exists &&
  h.world_socket.probe_ok &&
  (h.overlay_present || (h.fuse.dev && h.fuse.bin)) &&
  h.cgroup_v2 &&
  h.nft_present;

export const LinuxHostReport = z
  .strictObject({
    platform: z.literal("linux"),
    ok: z.boolean(),
    overlay_present: z.boolean(),
    fuse: z.strictObject({ dev: z.boolean(), bin: z.boolean() }),
    cgroup_v2: z.boolean(),
    nft_present: z.boolean(),
    /** `/proc/sys/kernel/dmesg_restrict` as read, or `"n/a"`. */
    dmesg_restrict: z.string().min(1),
    overlay_root: z.string().min(1),
    copydiff_root: z.string().min(1),
    ...fsSettings,
    world_socket: WorldSocketReport,
  })
  // world_enabled is an envelope field: here only "ok ⇒ prerequisites"; the envelope checks iff.
  .refine((h) => !h.ok || linuxHostPrereqsOk(h), {
    message: "linux host ok=true requires socket exists + probe ok + (overlay or fuse dev+bin) + cgroup v2 + nft",
    path: ["ok"],
  });
export type LinuxHostReport = z.infer<typeof LinuxHostReport>;

export const LimaReport = z.strictObject({
  installed: z.boolean(),
  virtualization: z.boolean(),
  /** `status` from `limactl list substrate --json` (`Running`, `Stopped`, `Broken`), or our
   * `NotFound` (no instance) / `Unknown` (not queried or unreadable). */
  vm_status: z.string().min(1),
  service_active: z.boolean(),
  agent_caps_ok: z.boolean(),
  vsock_proxy: z.boolean(),
});
export type LimaReport = z.infer<typeof LimaReport>;

export const macHostPrereqsOk = (h: { lima: LimaReport }): boolean =>
  h.lima.installed &&
  h.lima.virtualization &&
  h.lima.vm_status === "Running" &&
  h.lima.service_active &&
  h.lima.agent_caps_ok;

export const MacosHostReport = z
  .strictObject({
    platform: z.literal("macos"),
    ok: z.boolean(),
    ...fsSettings,
    lima: LimaReport,
  })
  .refine((h) => !h.ok || macHostPrereqsOk(h), {
    message: "macos host ok=true requires lima installed + virtualization + vm Running + service active + agent caps ok",
    path: ["ok"],
  });
export type MacosHostReport = z.infer<typeof MacosHostReport>;

export const WindowsHostReport = z.strictObject({
  platform: z.literal("windows"),
  ok: z.literal(false),
  status: z.literal("unsupported"),
  message: z.string().min(1),
});
export type WindowsHostReport = z.infer<typeof WindowsHostReport>;

export const HostDoctorReportV1 = z.discriminatedUnion("platform", [LinuxHostReport, MacosHostReport, WindowsHostReport]);
export type HostDoctorReportV1 = z.infer<typeof HostDoctorReportV1>;

/** The full per-platform `ok` rule (iff), given the envelope's `world_enabled`. */
export function hostOkRule(host: HostDoctorReportV1, worldEnabled: boolean): boolean {
  switch (host.platform) {
    case "linux":
      return worldEnabled && linuxHostPrereqsOk(host);
    case "macos":
      return worldEnabled && macHostPrereqsOk(host);
    case "windows":
      return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Envelopes
// ---------------------------------------------------------------------------------------------

const envelopeBase = {
  schema_version: SchemaVersion,
  platform: DoctorPlatform,
  world_enabled: z.boolean(),
  ok: z.boolean(),
  host: HostDoctorReportV1,
};

type EnvelopeBase = { platform: DoctorPlatform; world_enabled: boolean; ok: boolean; host: HostDoctorReportV1 };
function checkHost(e: EnvelopeBase, ctx: z.RefinementCtx): void {
  if (e.platform !== e.host.platform) {
    ctx.addIssue({ code: "custom", message: "platform must equal host.platform", path: ["platform"] });
  }
  if (e.host.ok !== hostOkRule(e.host, e.world_enabled)) {
    ctx.addIssue({
      code: "custom",
      message: `host.ok=${e.host.ok} contradicts the ${e.host.platform} ok rule (world_enabled=${e.world_enabled})`,
      path: ["host", "ok"],
    });
  }
}

/** `substrate host doctor --json`. */
export const HostDoctorEnvelopeV1 = z.strictObject(envelopeBase).superRefine((e, ctx) => {
  checkHost(e, ctx);
  if (e.ok !== e.host.ok) ctx.addIssue({ code: "custom", message: "ok must equal host.ok", path: ["ok"] });
});
export type HostDoctorEnvelopeV1 = z.infer<typeof HostDoctorEnvelopeV1>;

/** `world` when the effective config disables the world: nothing was probed. */
export const WorldBlockDisabled = z.strictObject({
  status: z.literal("disabled"),
  ok: z.literal(false),
  /** Why (which override disabled it) and how to enable it. */
  message: z.string().min(1),
});
/** `world` when the agent could not be reached (connect, HTTP or body failure). */
export const WorldBlockUnreachable = z.strictObject({
  status: z.literal("unreachable"),
  ok: z.literal(false),
  /** What failed (socket path, error) — the text renderer adds the fix. */
  message: z.string().min(1),
});
/** The agent's report plus `status`. */
export const WorldBlockReport = z
  .strictObject({ ...worldReportShape, status: z.enum(["ok", "missing_prereqs"]) })
  .refine((r) => r.ok === worldReportOk(r), okRule)
  .refine((r) => r.status === (r.ok ? "ok" : "missing_prereqs"), {
    message: 'status must be "ok" when ok and "missing_prereqs" otherwise',
    path: ["status"],
  });
export const WorldDoctorWorldBlock = z.union([WorldBlockDisabled, WorldBlockUnreachable, WorldBlockReport]);
export type WorldDoctorWorldBlock = z.infer<typeof WorldDoctorWorldBlock>;

/** `substrate world doctor --json`. */
export const WorldDoctorEnvelopeV1 = z
  .strictObject({ ...envelopeBase, world: WorldDoctorWorldBlock })
  .superRefine((e, ctx) => {
    checkHost(e, ctx);
    if (e.ok !== (e.host.ok && e.world.ok)) {
      ctx.addIssue({ code: "custom", message: "ok must equal host.ok && world.ok", path: ["ok"] });
    }
    if ((e.world.status === "disabled") !== !e.world_enabled) {
      ctx.addIssue({
        code: "custom",
        message: 'world.status must be "disabled" exactly when world_enabled is false',
        path: ["world", "status"],
      });
    }
  });
export type WorldDoctorEnvelopeV1 = z.infer<typeof WorldDoctorEnvelopeV1>;
