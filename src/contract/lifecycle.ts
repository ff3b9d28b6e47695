/**
 * Linux host lifecycle (issue 10): `substrate world warm|stop|restart|status --json`,
 * `substrate world verify --json` and `substrate health --json`. On macOS warm/stop/restart/
 * status print the Lima backend's LimaWorldReport (lima.ts) instead.
 */
import { z } from "zod";
import { ResourceLimits } from "./world.ts";
import { HostDoctorEnvelopeV1, WorldDoctorEnvelopeV1 } from "./doctor.ts";
import { WorldBackendName } from "./world.ts";
import { WorldIdleStats } from "./capabilities.ts";

/**
 * How the agent runs on a Linux host:
 * - socket_activation: root + systemd; `substrate-world-agent.socket` owns /run/substrate.sock;
 * - manual: root without systemd (containers, CI); a background agent with a pid file;
 * - rootless: an unprivileged user; the agent runs as that user, socket under ~/.substrate/run/,
 *   worlds in a user namespace.
 */
export const LifecycleMode = z.enum(["socket_activation", "manual", "rootless"]);
export type LifecycleMode = z.infer<typeof LifecycleMode>;

export const LifecycleAction = z.enum([
  "installed_agent",
  "replaced_agent",
  "installed_units",
  "updated_units",
  "updated_dropin",
  "created_group",
  "added_user_to_group",
  "daemon_reload",
  "enabled_socket",
  "started_socket",
  "restarted",
  "extracted_agent",
  "started_agent",
  "stopped_agent",
  "removed_stale_pid_file",
]);
export type LifecycleAction = z.infer<typeof LifecycleAction>;

/** `stat` of the agent socket: owner, group, octal mode. */
export const SocketInfo = z.strictObject({
  path: z.string().startsWith("/"),
  exists: z.boolean(),
  owner: z.string().nullable(),
  group: z.string().nullable(),
  /** e.g. "0660" */
  mode: z.string().regex(/^0[0-7]{3}$/).nullable(),
});
export type SocketInfo = z.infer<typeof SocketInfo>;

const Failure = z.strictObject({ message: z.string().min(1), hint: z.string().min(1) });

/** `substrate world warm|stop|restart --json` on Linux. */
export const LifecycleReport = z.strictObject({
  schema_version: z.literal(1),
  command: z.enum(["warm", "stop", "restart"]),
  ok: z.boolean(),
  backend: z.literal("linux-local"),
  mode: LifecycleMode,
  socket_path: z.string().startsWith("/"),
  /** The agent's pid when we know it (manual/rootless pid file, systemd MainPID). */
  pid: z.number().int().positive().nullable(),
  /** What this run changed, in order; empty = nothing to do (idempotent re-run). */
  actions: z.array(LifecycleAction),
  /** `versionString` of the agent answering after the command (null: none answers). */
  agent_version: z.string().nullable(),
  /** What the agent should be (embedded or SUBSTRATE_WORLD_AGENT_BIN). */
  expected_agent_version: z.string().nullable(),
  /** Next steps for the user (group re-login, linger, userns settings). */
  guidance: z.array(z.string()),
  duration_ms: z.number().int().nonnegative(),
  error: Failure.optional(),
});
export type LifecycleReport = z.infer<typeof LifecycleReport>;

export const WorldSummary = z.strictObject({
  id: z.string(),
  project_dir: z.string(),
  isolated: z.boolean(),
  isolate_network: z.boolean(),
  age_ms: z.number().int().nonnegative(),
  /** executes served; reuse count = execs - 1 */
  execs: z.number().int().nonnegative(),
  /** as requested; the cgroup adds headroom for Substrate's own tasks */
  limits: ResourceLimits.optional(),
  /** mount points inside the world, "PATH ro|rw" */
  mounts: z.array(z.string()).optional(),
  /** layers that degraded for this world */
  warnings: z.array(z.string()).optional(),
});
export type WorldSummary = z.infer<typeof WorldSummary>;

/** `substrate world status --json` on Linux. */
export const WorldStatusReport = z.strictObject({
  schema_version: z.literal(1),
  backend: WorldBackendName,
  /** null: no agent runs and none is installed. */
  mode: LifecycleMode.nullable(),
  running: z.boolean(),
  agent: z.strictObject({
    version: z.string().nullable(),
    embedded_version: z.string().nullable(),
    /** null when either side is unknown */
    version_match: z.boolean().nullable(),
    pid: z.number().int().positive().nullable(),
    uptime_ms: z.number().int().nonnegative().nullable(),
  }),
  socket: SocketInfo,
  /** systemd units (socket_activation only) */
  units: z
    .strictObject({ socket: z.string(), service: z.string(), socket_enabled: z.string() })
    .nullable(),
  worlds: z.array(WorldSummary),
  /** Issue 18.6: idle session world retirement (the agent's capabilities.worlds.idle; absent: older agent or none answers). */
  idle: WorldIdleStats.optional(),
  /** One line per kernel feature the worlds run without. */
  degraded: z.array(z.string()),
  error: Failure.optional(),
});
export type WorldStatusReport = z.infer<typeof WorldStatusReport>;

export const VerifyCheckId = z.enum([
  "project_writable",
  "system_read_only",
  "outside_project_denied",
  "host_processes_invisible",
  "own_network_namespace",
  "egress_refused",
  "ipv6_dropped",
  "seccomp_no_new_privs",
  "landlock",
  "cgroup_limits",
  "mount_denied_isolated",
  "overlay_diff_captured",
]);
export type VerifyCheckId = z.infer<typeof VerifyCheckId>;

export const VerifyCheck = z.strictObject({
  id: VerifyCheckId,
  /** pass/fail count; warn = applied in degraded form (said so); info = not applicable here */
  status: z.enum(["pass", "fail", "warn", "info"]),
  detail: z.string().min(1),
  /** The next step, for fail and warn. */
  fix: z.string().nullable(),
});
export type VerifyCheck = z.infer<typeof VerifyCheck>;

/** `substrate world verify --json`. ok = no check failed. */
export const VerifyReport = z
  .strictObject({
    schema_version: z.literal(1),
    ok: z.boolean(),
    backend: WorldBackendName,
    socket_path: z.string(),
    world_id: z.string().nullable(),
    /** The world spec the checks ran against (from the policy in force). */
    spec: z.strictObject({ isolate_network: z.boolean(), fs_mode: z.string(), project_dir: z.string() }),
    checks: z.array(VerifyCheck),
    duration_ms: z.number().int().nonnegative(),
  })
  .refine((r) => r.ok === !r.checks.some((c) => c.status === "fail"), { message: "ok must be true iff no check failed", path: ["ok"] });
export type VerifyReport = z.infer<typeof VerifyReport>;

/** `substrate health --json`. */
export const HealthReport = z.strictObject({
  schema_version: z.literal(1),
  ok: z.boolean(),
  /** `substrate world doctor` envelope (host block + world block), parsed through the contract. */
  doctor: WorldDoctorEnvelopeV1.or(HostDoctorEnvelopeV1),
  policy: z.strictObject({
    /** the profile id (`.substrate-profile`), "default" when none selects one */
    id: z.string().nullable(),
    /** the policy file, or `builtin:default` */
    file: z.string().nullable(),
    commit: z.string().nullable(),
    valid: z.boolean(),
    error: z.string().nullable(),
  }),
  shims: z.strictObject({ dir: z.string(), installed: z.array(z.string()), on_path: z.boolean() }),
  trace: z.strictObject({
    file: z.string(),
    size_bytes: z.number().int().nonnegative(),
    last_span: z.strictObject({ span_id: z.string(), ts: z.string(), cmd: z.string().nullable() }).nullable(),
  }),
  agent: z.strictObject({
    reachable: z.boolean(),
    socket_path: z.string(),
    version: z.string().nullable(),
    uptime_ms: z.number().int().nonnegative().nullable(),
  }),
});
export type HealthReport = z.infer<typeof HealthReport>;
