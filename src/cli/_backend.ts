/** Picks the world backend for this platform (spec: backend auto-selection). */
import type { EffectiveConfig } from "../contract/index.ts";
import type { WorldBackend } from "../world/backend.ts";
import { LinuxLocalBackend } from "../world/linux-local.ts";
import { CliError, ExitCode } from "./_errors.ts";

export function selectBackend(cfg: EffectiveConfig, env: NodeJS.ProcessEnv = process.env): WorldBackend {
  if (process.platform === "linux") return new LinuxLocalBackend(cfg.socket_path, env);
  throw new CliError(
    ExitCode.UNSUPPORTED,
    `no world backend for ${process.platform} in this build`,
    process.platform === "darwin" ? "run `substrate world warm` (macOS support: docs/dev/mac_world_setup.md)" : "use --no-world",
  );
}
