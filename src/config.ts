/**
 * Effective configuration: flags > environment > ~/.substrate/config.toml > defaults.
 * A broken config file is a usage error (exit 2) naming the file and the field.
 */
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import TOML from "@iarna/toml";
import { ConfigFile, type EffectiveConfig } from "./contract/config.ts";
import { CliError, ExitCode } from "./cli/_errors.ts";

export const DEFAULT_SOCKET = "/run/substrate.sock";

export interface ConfigInputs {
  env?: NodeJS.ProcessEnv;
  home?: string;
  /** --world (true) / --no-world (false) / neither (undefined). */
  worldFlag?: boolean;
}

export const substrateHome = (env: NodeJS.ProcessEnv = process.env, home?: string): string =>
  env.SUBSTRATE_HOME ?? join(home ?? env.HOME ?? homedir(), ".substrate");

/**
 * Issue 10 (rootless mode, src/lifecycle/rootless.ts): an unprivileged user's own agent listens
 * here. It is the default socket for a non-root user when no system agent's socket exists.
 */
export const rootlessSocketPath = (env: NodeJS.ProcessEnv = process.env, home?: string): string =>
  join(substrateHome(env, home), "run", "substrate.sock");

/** Default socket: the system one, or (non-root, no system socket) the user's rootless one. */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env, home?: string): string {
  if (process.getuid?.() === 0 || existsSync(DEFAULT_SOCKET)) return DEFAULT_SOCKET;
  const mine = rootlessSocketPath(env, home);
  return existsSync(mine) ? mine : DEFAULT_SOCKET;
}

export function readConfigFile(path: string): ConfigFile {
  if (!existsSync(path)) return ConfigFile.parse({});
  let raw: unknown;
  try {
    raw = TOML.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new CliError(ExitCode.USAGE, `${path}: invalid TOML: ${(e as Error).message.split("\n")[0]}`, "fix the file or move it away");
  }
  const r = ConfigFile.safeParse(raw);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
    throw new CliError(ExitCode.USAGE, `${path}: ${issues}`, "see docs/CONFIG.md for the keys and their types");
  }
  return r.data;
}

export function effectiveConfig(o: ConfigInputs = {}): EffectiveConfig & { file: ConfigFile } {
  const env = o.env ?? process.env;
  const path = join(substrateHome(env, o.home), "config.toml");
  const file = readConfigFile(path);
  let enabled = file.world.enabled;
  let source: EffectiveConfig["world_enabled_source"] = existsSync(path) ? "config" : "default";
  const envWorld = env.SUBSTRATE_WORLD?.toLowerCase();
  if (envWorld === "disabled" || envWorld === "0" || envWorld === "off") {
    enabled = false;
    source = "env";
  } else if (envWorld === "enabled" || envWorld === "1" || envWorld === "on") {
    enabled = true;
    source = "env";
  }
  if (o.worldFlag !== undefined) {
    enabled = o.worldFlag;
    source = "flag";
  }
  return {
    world_enabled: enabled,
    world_fs_mode: file.world.fs_mode,
    world_fs_isolation: file.world.fs_isolation,
    // --world asks for the world explicitly: never fall back to the host.
    world_fs_require_world: file.world.require_world || o.worldFlag === true,
    isolate_network: file.world.isolate_network,
    socket_path: env.SUBSTRATE_WORLD_SOCKET ?? file.world.socket ?? defaultSocketPath(env, o.home), // issue 10: rootless fallback
    config_file: existsSync(path) ? path : null,
    world_enabled_source: source,
    file,
  };
}
