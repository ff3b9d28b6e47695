/**
 * Issue 3 (isolated world pool, agent/world/spares.ts): what `capabilities.worlds.spares`
 * reports. Optional in WorldStats: older agents do not send it.
 */
import { z } from "zod";

export const SparePoolStats = z.strictObject({
  /** SUBSTRATE_SPARE_TTL_SECS in force; 0 = pool off */
  ttl_secs: z.number().nonnegative(),
  /** spares ready or being warmed now (at most one per isolated spec) */
  spares: z.number().int().nonnegative(),
  /** isolated executes served by a pre-warmed world */
  hits: z.number().int().nonnegative(),
  /** isolated executes that had to build their world (pool on) */
  misses: z.number().int().nonnegative(),
  /** spares built */
  warmed: z.number().int().nonnegative(),
  /** spares destroyed unused (TTL, apply, died, shutdown) */
  dropped: z.number().int().nonnegative(),
});
export type SparePoolStats = z.infer<typeof SparePoolStats>;
