/** GET /v1/capabilities: what this agent and kernel can do (negotiation + doctor input). */
import { z } from "zod";
import { SparePoolStats } from "./spares.ts";
import { VersionInfo } from "./common.ts";
import { WorldBackendName } from "./world.ts";

export const CgroupMode = z.enum(["v2", "v1", "hybrid", "none"]);
export type CgroupMode = z.infer<typeof CgroupMode>;

export const Features = z.strictObject({
  namespaces: z.strictObject({
    mount: z.boolean(),
    pid: z.boolean(),
    uts: z.boolean(),
    ipc: z.boolean(),
    net: z.boolean(),
    user: z.boolean(),
  }),
  overlay: z.boolean(),
  fuse_overlayfs: z.boolean(),
  cgroup: CgroupMode,
  nft: z.boolean(),
  landlock: z.strictObject({ supported: z.boolean(), abi: z.number().int().nullable() }),
  seccomp: z.boolean(),
  pty: z.boolean(),
});
export type Features = z.infer<typeof Features>;

/** Issue 18.6 (agent/world/idle.ts): idle session world retirement. */
export const WorldIdleStats = z.strictObject({
  /** SUBSTRATE_WORLD_IDLE_SECS in force; 0 = idle worlds are never retired */
  ttl_secs: z.number().nonnegative(),
  /** session worlds alive with no command in flight right now */
  idle: z.number().int().nonnegative(),
  /** session worlds retired (torn down) for being idle since the agent started */
  retired: z.number().int().nonnegative(),
});
export type WorldIdleStats = z.infer<typeof WorldIdleStats>;

export const WorldStats = z.strictObject({
  active: z.number().int().nonnegative(),
  created: z.number().int().nonnegative(),
  /** executes served by an already-running world */
  reused: z.number().int().nonnegative(),
  executes: z.number().int().nonnegative(),
  /** reused / executes (0 when no execute yet); spec goal > 0.9 */
  reuse_ratio: z.number().min(0).max(1),
  /** issue 3: pre-warmed isolated worlds (optional: older agents do not send it) */
  spares: SparePoolStats.optional(),
  /** issue 18.6: idle session worlds (optional: older agents do not send it) */
  idle: WorldIdleStats.optional(),
});
export type WorldStats = z.infer<typeof WorldStats>;

/** Issue 6: what this /v1 endpoint offers beyond execute (negotiation for clients). */
export const ApiFeatures = z.strictObject({
  /** GET /v1/stream WebSocket sessions (PTY and pipes) */
  stream: z.boolean(),
  /** detachable stream sessions that can be re-attached with replay */
  stream_detach: z.boolean(),
  /** per-agent budgets (429 + rate_limit span), GET /v1/budgets/:agent_id */
  budgets: z.boolean(),
  /** scope tokens on a sealed memfd (SUBSTRATE_SCOPE_FD) */
  scope_fd: z.boolean(),
  /** POST /v1/request_scopes + /approve */
  request_scopes: z.boolean(),
  /** GET /v1/trace/:span_id */
  trace: z.boolean(),
});
export type ApiFeatures = z.infer<typeof ApiFeatures>;

export const Capabilities = z.strictObject({
  api_version: z.literal("v1"),
  agent: VersionInfo,
  kernel: z.string(),
  arch: z.string(),
  backend: WorldBackendName,
  features: Features,
  worlds: WorldStats,
  uptime_ms: z.number().int().nonnegative(),
  /** issue 6 (optional: older agents do not send it) */
  api: ApiFeatures.optional(),
});
export type Capabilities = z.infer<typeof Capabilities>;
