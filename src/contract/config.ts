/** ~/.substrate/config.toml — the user's settings (docs/CONFIG.md). */
import { z } from "zod";
import { FsIsolation, FsMode } from "./world.ts";

export const ConfigFile = z.strictObject({
  world: z
    .strictObject({
      /** false = run commands on the host (like --no-world / SUBSTRATE_WORLD=disabled). */
      enabled: z.boolean().default(true),
      /** true = never fall back to the host; exit 3 when the world is unavailable. */
      require_world: z.boolean().default(false),
      fs_mode: FsMode.default("writable"),
      fs_isolation: FsIsolation.default("workspace"),
      isolate_network: z.boolean().default(true),
      /** Agent socket (default /run/substrate.sock; SUBSTRATE_WORLD_SOCKET overrides). */
      socket: z.string().startsWith("/").optional(),
    })
    .default({ enabled: true, require_world: false, fs_mode: "writable", fs_isolation: "workspace", isolate_network: true }),
  graph: z
    .strictObject({ enabled: z.boolean().default(false), index_user_docs: z.boolean().default(false), hash_non_code: z.boolean().default(false) })
    .default({ enabled: false, index_user_docs: false, hash_non_code: false }),
});
export type ConfigFile = z.infer<typeof ConfigFile>;

/** What the CLI acts on after flags > env > config file > defaults. */
export const EffectiveConfig = z.strictObject({
  world_enabled: z.boolean(),
  world_fs_mode: FsMode,
  world_fs_isolation: FsIsolation,
  world_fs_require_world: z.boolean(),
  isolate_network: z.boolean(),
  socket_path: z.string(),
  config_file: z.string().nullable(),
  /** Where world_enabled came from: "flag" | "env" | "config" | "default". */
  world_enabled_source: z.enum(["flag", "env", "config", "default"]),
});
export type EffectiveConfig = z.infer<typeof EffectiveConfig>;
