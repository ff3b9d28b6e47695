/** Issue 16: `world_info` — what a command of this MCP server gets (the pipeline's own answers, not a copy). */
import { runEntry } from "../cli/_entry-run.ts";

export interface WorldInfo {
  world_enabled: boolean;
  world_id: string | null;
  hostname: string | null;
  project_dir: string;
  writable_paths: string[];
  network: { isolated: boolean; allowed_domains: string[] };
  policy_id: string | null;
  shell: string;
}

export async function worldInfo(o: { cwd: string; env: Record<string, string | undefined>; worldFlag?: boolean }): Promise<WorldInfo> {
  const [{ effectiveConfig }, { projectDirOf, worldSpecFor }, { loadEffectivePolicySync }] = await Promise.all([
    import("../config.ts"),
    import("../run/plan.ts"),
    import("../broker/load.ts"),
  ]);
  const cfg = effectiveConfig({ env: o.env as NodeJS.ProcessEnv, worldFlag: o.worldFlag });
  const projectDir = await projectDirOf(o.cwd);
  let policy: ReturnType<typeof loadEffectivePolicySync>["policy"] | undefined;
  try {
    policy = loadEffectivePolicySync(o.cwd).policy;
  } catch {
    policy = undefined;
  }
  const spec = await worldSpecFor({ policy, cfg, projectDir });
  // Ask the world itself (one command through the pipeline): its id and hostname.
  const probe = await runEntry({ argv: ["/bin/sh", "-c", 'printf "%s\\n%s\\n" "${SUBSTRATE_WORLD_ID:-}" "$(hostname)"'], cwd: o.cwd, env: o.env, io: "buffered", component: "api", asker: "api", ...(o.worldFlag !== undefined ? { worldFlag: o.worldFlag } : {}), say: () => {} }).catch(() => null);
  const [id, host] = probe && probe.exit === 0 ? Buffer.from(probe.stdout ?? []).toString("utf8").split("\n") : [];
  const writable = spec.fs_mode === "read_only" ? [] : [projectDir];
  return {
    world_enabled: cfg.world_enabled && probe?.ran === "world",
    world_id: id || null,
    hostname: host || null,
    project_dir: projectDir,
    writable_paths: [...writable, "/tmp (the world's own, not the host's)"],
    network: { isolated: spec.isolate_network !== false, allowed_domains: spec.allowed_domains ?? [] },
    policy_id: policy?.id ?? null,
    shell: "/bin/bash",
  };
}
