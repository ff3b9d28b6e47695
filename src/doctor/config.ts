/**
 * The effective world settings the doctors report (`world_enabled`, `world_fs_*`).
 *
 * Precedence, lowest first: defaults → `~/.substrate/config.toml` `[world]` → env
 * `SUBSTRATE_WORLD=disabled|enabled` → global flags `--world` / `--no-world`.
 * Only reads; a malformed config file is a usage/config error (exit 2), never a crash.
 *
 * The host CLI's general config module supersedes this once it exists: the doctor only needs a
 * `WorldSettings` value, so swapping the resolver is a one-line change in src/cli/.
 */
import TOML from "@iarna/toml";
import { join } from "node:path";
import { FsIsolation, FsMode } from "../contract/index.ts";
import type { HostSystem } from "./system.ts";

export interface WorldSettings {
  world_enabled: boolean;
  /** Human-readable origin of world_enabled, e.g. "--no-world" or "SUBSTRATE_WORLD=disabled". */
  enabled_source: string;
  fs_mode: "writable" | "read_only";
  fs_isolation: "workspace" | "full";
  require_world: boolean;
}

/** `--world` → true, `--no-world` → false, neither → undefined. */
export interface WorldFlags {
  world?: boolean;
}

export class ConfigError extends Error {
  constructor(
    message: string,
    readonly hint: string,
  ) {
    super(message);
    this.name = "ConfigError";
  }
}

export const userConfigPath = (home: string): string => join(home, ".substrate", "config.toml");

export function resolveWorldSettings(sys: Pick<HostSystem, "env" | "home" | "readText">, flags: WorldFlags): WorldSettings {
  const s: WorldSettings = {
    world_enabled: true,
    enabled_source: "default",
    fs_mode: "writable",
    fs_isolation: "workspace",
    require_world: false,
  };

  const path = userConfigPath(sys.home);
  const text = sys.readText(path);
  if (text !== null) {
    let doc: Record<string, unknown>;
    try {
      doc = TOML.parse(text) as Record<string, unknown>;
    } catch (e) {
      throw new ConfigError(`invalid TOML in ${path}: ${(e as Error).message.split("\n")[0]}`, `fix the syntax in ${path}`);
    }
    const world = doc.world;
    if (world !== undefined) {
      if (typeof world !== "object" || world === null || Array.isArray(world)) {
        throw new ConfigError(`${path}: [world] must be a table`, `write it as a [world] section in ${path}`);
      }
      const w = world as Record<string, unknown>;
      if (w.enabled !== undefined) {
        if (typeof w.enabled !== "boolean") throw new ConfigError(`${path}: world.enabled must be true or false`, `set world.enabled = true in ${path}`);
        s.world_enabled = w.enabled;
        s.enabled_source = `${path} (world.enabled)`;
      }
      if (w.fs_mode !== undefined) {
        const r = FsMode.safeParse(w.fs_mode);
        if (!r.success) throw new ConfigError(`${path}: world.fs_mode must be "writable" or "read_only"`, `set world.fs_mode = "writable" in ${path}`);
        s.fs_mode = r.data;
      }
      if (w.fs_isolation !== undefined) {
        const r = FsIsolation.safeParse(w.fs_isolation);
        if (!r.success) throw new ConfigError(`${path}: world.fs_isolation must be "workspace" or "full"`, `set world.fs_isolation = "workspace" in ${path}`);
        s.fs_isolation = r.data;
      }
      if (w.require_world !== undefined) {
        if (typeof w.require_world !== "boolean") throw new ConfigError(`${path}: world.require_world must be true or false`, `set world.require_world = false in ${path}`);
        s.require_world = w.require_world;
      }
    }
  }

  const env = sys.env.SUBSTRATE_WORLD;
  if (env === "disabled" || env === "enabled") {
    s.world_enabled = env === "enabled";
    s.enabled_source = `SUBSTRATE_WORLD=${env}`;
  }
  if (flags.world !== undefined) {
    s.world_enabled = flags.world;
    s.enabled_source = flags.world ? "--world" : "--no-world";
  }
  return s;
}
