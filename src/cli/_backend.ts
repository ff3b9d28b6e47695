/** The host backend for this platform: src/world/select.ts is the one platform switch. */
import type { EffectiveConfig } from "../contract/config.ts";
import type { WorldBackend } from "../world/backend.ts";
import { hostBackend, UnsupportedPlatform } from "../world/select.ts";
import { projectDirFor } from "./_project.ts";
import { CliError, ExitCode } from "./_errors.ts";

export function selectBackend(cfg: Pick<EffectiveConfig, "socket_path">, env: NodeJS.ProcessEnv = process.env): WorldBackend {
  try {
    return hostBackend(cfg, env, projectDirFor(process.cwd()));
  } catch (e) {
    if (e instanceof UnsupportedPlatform) throw new CliError(ExitCode.UNSUPPORTED, e.message, e.hint);
    throw e;
  }
}
