/**
 * macOS world through Lima: what `limactl list --json` gives us, the guest layout check,
 * the rebuild state file doctor reads, and the `substrate world warm|status|stop --json`
 * report (M1 spec: socket-activated agent, idempotent warm, actionable diagnostics).
 */
import { z } from "zod";

/** One line of `limactl list NAME --json` (Lima prints one object per line). Lima adds
 * fields between versions, so unknown keys are kept, and only what we use is required. */
export const LimaInstance = z.looseObject({
  name: z.string().min(1),
  status: z.string(), // "Running" | "Stopped" | "Broken" (or "" when Lima cannot tell)
  dir: z.string(),
  arch: z.string().optional(),
  vmType: z.string().optional(),
  cpus: z.number().optional(),
  memory: z.number().optional(),
  disk: z.number().optional(),
  sshLocalPort: z.number().int().optional(),
  sshConfigFile: z.string().optional(),
  sshAddress: z.string().optional(),
  hostAgentPID: z.number().int().optional(),
  config: z.record(z.string(), z.unknown()).optional(),
  limaVersion: z.string().optional(),
});
export type LimaInstance = z.infer<typeof LimaInstance>;

export const LimaProfileName = z.enum(["slim", "dev"]);
export type LimaProfileName = z.infer<typeof LimaProfileName>;

/** The socket-activated layout inside the guest, as one `limactl shell` reports it. */
export const GuestLayout = z.strictObject({
  agent_present: z.boolean(),
  /** `substrate-world-agent --version --json` of the installed binary, when it ran. */
  agent_version: z.string().nullable(),
  /** The binary exists but cannot run (exec format error = wrong CPU arch, ...). */
  agent_exec_error: z.string().nullable(),
  agent_current: z.boolean(),
  socket_unit_current: z.boolean(),
  service_unit_current: z.boolean(),
  mounts_dropin_current: z.boolean(),
  socket_enabled: z.boolean(),
  socket_active: z.boolean(),
  /** `stat -c '%U:%G %a'` of /run/substrate.sock, e.g. "root:substrate 660"; null = missing. */
  socket_owner: z.string().nullable(),
  /** The SSH user is in the `substrate` group (group database). */
  user_in_group: z.boolean(),
  /** ...and the current SSH session already carries it (a Lima SSH master may not). */
  session_in_group: z.boolean(),
  /** GET /v1/capabilities answered through /run/substrate.sock, as the SSH user. */
  capabilities_ok: z.boolean(),
  /** /run/lima-boot-done exists: Lima's boot scripts (and `provision:`) finished this boot. */
  boot_done: z.boolean().optional(),
  /** Tools a world needs that the guest lacks (nft, fuse-overlayfs, setfattr, …). */
  missing_tools: z.array(z.string()).optional(),
  /** The drop-in making the Lima user the socket's owner is installed and current. */
  socket_dropin_current: z.boolean().optional(),
  /** What is wrong, one short sentence each (empty when healthy). */
  problems: z.array(z.string()),
});
export type GuestLayout = z.infer<typeof GuestLayout>;

export const WarmAction = z.enum([
  "created",
  "started",
  "reconnected",
  "pushed_agent",
  "pushed_units",
  "provisioned",
  "repaired_socket",
  "recreated",
  "stopped",
  /** Status was Running before the guest was ready: waited for /run/lima-boot-done. */
  "waited_ready",
  /** A Broken instance (stale ha.pid, crashed hostagent) repaired by `limactl stop -f` + start. */
  "stopped_forcibly",
  /** Lima's guestSocket forward was dead (master replaced: sleep, --reconnect): re-registered. */
  "repaired_forward",
  /** Missing guest packages installed by the provision step. */
  "installed_tools",
]);
export type WarmAction = z.infer<typeof WarmAction>;

/** `~/.substrate/lima/state.json`: doctor fails loudly while `phase` is not "ready". */
export const LimaRebuildState = z.strictObject({
  phase: z.enum(["starting", "provisioning", "recreating", "ready", "failed"]),
  pid: z.number().int().positive(),
  started_at: z.string(),
  updated_at: z.string(),
  instance: z.string().min(1),
  message: z.string().optional(),
});
export type LimaRebuildState = z.infer<typeof LimaRebuildState>;

/** `substrate world warm|status|stop|restart --json` on the Lima backend. */
export const LimaWorldReport = z.strictObject({
  command: z.enum(["warm", "status", "stop", "restart"]),
  ok: z.boolean(),
  instance: z.string().min(1),
  vm_status: z.string().min(1),
  profile: LimaProfileName.nullable(),
  actions: z.array(WarmAction),
  layout: GuestLayout.nullable(),
  expected_agent_version: z.string().nullable(),
  duration_ms: z.number().int().nonnegative(),
  error: z.strictObject({ message: z.string().min(1), hint: z.string().min(1) }).optional(),
});
export type LimaWorldReport = z.infer<typeof LimaWorldReport>;
