/**
 * The one platform switch: which host backend serves this machine (spec: backend
 * auto-selection). macOS → the Lima VM; Linux → the local agent (system or rootless, see
 * linux-local.ts). SUBSTRATE_TEST_LIMA_BACKEND=1 is a hidden, test-only switch that runs the
 * mac code path on Linux against the limactl emulator (tests/e2e).
 */
import type { EffectiveConfig } from "../contract/config.ts";
import type { WorldBackend } from "./backend.ts";
import { WorldUnavailable } from "./backend.ts";
import { LinuxLocalBackend } from "./linux-local.ts";
import { MacLimaBackend } from "./mac-lima.ts";

/** Does this machine use the Lima VM (macOS, or the test switch)? */
export const usesLima = (env: Record<string, string | undefined> = process.env): boolean =>
  process.platform === "darwin" || env.SUBSTRATE_TEST_LIMA_BACKEND === "1";

export function hostBackend(cfg: Pick<EffectiveConfig, "socket_path">, env: NodeJS.ProcessEnv = process.env, project?: string): WorldBackend {
  if (usesLima(env)) return new MacLimaBackend(env, project ?? null);
  if (process.platform === "linux") return new LinuxLocalBackend(cfg.socket_path, env);
  throw new UnsupportedPlatform(`no world backend for ${process.platform} in this build`, "use --no-world");
}

/** No backend exists for this platform (exit 4 in the CLI). */
export class UnsupportedPlatform extends WorldUnavailable {
  override name = "UnsupportedPlatform";
}
