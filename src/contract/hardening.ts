/**
 * What the world spawner applied to itself (and so to every command it forks):
 * no_new_privs, capability drop, Landlock, seccomp. Returned by `hardenSelf()` in the
 * spawner, carried to the agent on the spawner's `ready` line, shown by doctor.
 */
import { z } from "zod";

export const HardeningMode = z.enum(["baseline", "isolated"]);
export type HardeningMode = z.infer<typeof HardeningMode>;

export const HardeningReport = z.strictObject({
  mode: HardeningMode,
  no_new_privs: z.boolean(),
  capabilities: z.strictObject({
    applied: z.boolean(),
    /** capability names kept (lower case, no CAP_ prefix) */
    kept: z.array(z.string()),
    /** CapBnd of the spawner after the drop (hex, as in /proc/self/status) */
    bounding: z.string().optional(),
  }),
  landlock: z.strictObject({
    applied: z.boolean(),
    /** null: Landlock absent or disabled on this kernel */
    abi: z.number().int().positive().nullable(),
    rw: z.array(z.string()),
    /** listed paths that did not exist (no rule added) */
    skipped: z.array(z.string()),
    scoped: z.boolean(),
  }),
  seccomp: z.strictObject({
    applied: z.boolean(),
    /** what the risky syscalls get: log (baseline), allow (baseline, kernel lacks log), errno (isolated) */
    action: z.enum(["log", "allow", "errno"]).nullable(),
    instructions: z.number().int().nonnegative(),
  }),
  /** One actionable warning per layer that could not be applied. Empty = fully hardened. */
  degraded: z.array(z.string()),
  duration_ms: z.number().nonnegative(),
});
export type HardeningReport = z.infer<typeof HardeningReport>;
