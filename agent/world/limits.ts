/**
 * Issue 18.7 (FSVIEW): a world's resource limits where the spec leaves them out. One owner —
 * the agent — so an API client that sends no limits gets the same bounds as a policy that sets
 * none (docs/POLICY.md `world.limits`, docs/WORLD.md):
 * - memory 2Gi: the spec's default policy sets exactly this, so a policy that omits `limits`
 *   behaves like the default one; it also bounds the world's scratch tmpfs (fsview.ts: half of
 *   it), whose pages are charged to the world's cgroup.
 * - pids 4096 (cgroups.ts DEFAULT_PIDS_MAX): a fork-bomb guard that still fits a headless browser
 *   or a parallel JVM/cargo build (each several hundred threads); 512 did not.
 * - cpu: none. A CPU cap slows every build on a large machine; the default policy sets "2".
 */
import type { ResourceLimits } from "../../src/contract/world.ts";
import { DEFAULT_PIDS_MAX } from "./cgroups.ts";

export const DEFAULT_MEMORY = "2Gi";

export function worldLimits(l: ResourceLimits): ResourceLimits {
  return { ...l, memory: l.memory ?? DEFAULT_MEMORY, pids: l.pids ?? DEFAULT_PIDS_MAX };
}
