/**
 * Effective configuration: flags > environment > ~/.substrate/config.toml > defaults.
 * A broken config file is a usage error (exit 2) naming the file and the field.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { ConfigFile, EffectiveConfig } from "./contract/config.ts";
import { CliError, ExitCode } from "./errors.ts";
import { pathsOf, substrateHomeOf } from "./settings.ts";

export const DEFAULT_SOCKET = "/run/substrate.sock";

export interface ConfigInputs {
  env?: NodeJS.ProcessEnv;
  home?: string;
  /** --world (true) / --no-world (false) / neither (undefined). */
  worldFlag?: boolean;
}

/** `~/.substrate` (src/settings.ts: the one resolution). */
export const substrateHome = (env: NodeJS.ProcessEnv = process.env, home?: string): string => substrateHomeOf(env, home);

/**
 * Issue 10 (rootless mode, src/lifecycle/rootless.ts): an unprivileged user's own agent listens
 * here. It is the default socket for a non-root user when no system agent's socket exists.
 */
export const rootlessSocketPath = (env: NodeJS.ProcessEnv = process.env, home?: string): string => pathsOf(env, home).rootlessSocket;

/**
 * "Which agent serves me" (one answer for `-c`, doctor, status, verify, health and the proxy):
 * root → the system socket; a non-root user → the system socket when a system agent's socket
 * exists (group `substrate`), else the user's rootless socket — the one `substrate -c` starts
 * an agent on — whether or not that agent runs yet. (SUBSTRATE_WORLD_SOCKET / world.socket
 * override it in effectiveConfig.)
 */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env, home?: string): string {
  if (process.getuid?.() === 0 || existsSync(DEFAULT_SOCKET)) return DEFAULT_SOCKET;
  return rootlessSocketPath(env, home);
}

/**
 * `ConfigFile.parse({})`, as data: the usual case (no config.toml) costs no TOML parser and no
 * zod schema on the `substrate -c` hot path (tests/unit/run/config-defaults.test.ts keeps it
 * equal to the schema's defaults).
 */
export const DEFAULT_CONFIG_FILE: ConfigFile = Object.freeze({
  world: Object.freeze({ enabled: true, require_world: false, fs_mode: "writable", fs_isolation: "workspace", isolate_network: true }),
  graph: Object.freeze({ enabled: false, index_user_docs: false, hash_non_code: false }),
}) as ConfigFile;

export function readConfigFile(path: string): ConfigFile {
  if (!existsSync(path)) return DEFAULT_CONFIG_FILE;
  // only when there is a file: the TOML parser and the schema (sync, so require)
  const TOML = require("@iarna/toml") as typeof import("@iarna/toml");
  const { ConfigFile } = require("./contract/config.ts") as typeof import("./contract/config.ts");
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
  const path = pathsOf(env, o.home).config;
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
