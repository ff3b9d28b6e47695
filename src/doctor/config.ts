/**
 * The effective world settings the doctors report (`world_enabled`, `world_fs_*`, socket),
 * taken from the CLI's one config resolver (src/config.ts: flags > env > config file >
 * defaults). Only reads; a malformed config file surfaces as the resolver's usage error
 * (exit 2), never a crash.
 */
import { effectiveConfig } from "../config.ts";
import type { HostSystem } from "./system.ts";

export interface WorldSettings {
  world_enabled: boolean;
  /** Human-readable origin of world_enabled, e.g. "--no-world" or "SUBSTRATE_WORLD=disabled". */
  enabled_source: string;
  fs_mode: "writable" | "read_only";
  fs_isolation: "workspace" | "full";
  require_world: boolean;
  /** Where the world agent listens (SUBSTRATE_WORLD_SOCKET > config world.socket > /run/substrate.sock). */
  socket_path: string;
}

/** `--world` → true, `--no-world` → false, neither → undefined. */
export interface WorldFlags {
  world?: boolean;
}

export function resolveWorldSettings(sys: Pick<HostSystem, "env" | "home">, flags: WorldFlags): WorldSettings {
  const cfg = effectiveConfig({ env: sys.env as NodeJS.ProcessEnv, home: sys.home, worldFlag: flags.world });
  const source = {
    flag: flags.world ? "--world" : "--no-world",
    env: `SUBSTRATE_WORLD=${sys.env.SUBSTRATE_WORLD}`,
    config: `${cfg.config_file} (world.enabled)`,
    default: "default",
  }[cfg.world_enabled_source];
  return {
    world_enabled: cfg.world_enabled,
    enabled_source: source,
    fs_mode: cfg.world_fs_mode,
    fs_isolation: cfg.world_fs_isolation,
    require_world: cfg.world_fs_require_world,
    socket_path: cfg.socket_path,
  };
}
