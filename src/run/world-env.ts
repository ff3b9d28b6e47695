/**
 * The env a command gets in the world, from the caller's: the one derivation (plan() and the
 * CLI's fast path, src/cli/fast.ts, both call it). No imports: the hot path.
 */
/** Env passed into the world: the caller's, minus what only makes sense on the host. */
export function worldEnv(env: Record<string, string | undefined>, cwd: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) continue;
    if (k.startsWith("LISTEN_") || k === "SUBSTRATE_WORLD_SOCKET" || k === "OLDPWD") continue;
    out[k] = v;
  }
  out.PWD = cwd;
  return out;
}
