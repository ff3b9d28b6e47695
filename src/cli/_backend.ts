/** Picks the world backend for this platform (spec: backend auto-selection). */
import type { EffectiveConfig } from "../contract/index.ts";
import type { WorldBackend } from "../world/backend.ts";
import { LinuxLocalBackend } from "../world/linux-local.ts";
import { MacLimaBackend } from "../world/mac-lima.ts";
import { projectDirFor } from "./_project.ts";
import { CliError, ExitCode } from "./_errors.ts";

export function selectBackend(cfg: EffectiveConfig, env: NodeJS.ProcessEnv = process.env): WorldBackend {
  // macOS: the Lima VM (issue 7). SUBSTRATE_TEST_LIMA_BACKEND=1 is a hidden, test-only switch
  // that runs the same mac code path on Linux against the limactl emulator (tests/e2e).
  if (process.platform === "darwin" || env.SUBSTRATE_TEST_LIMA_BACKEND === "1") return new MacLimaBackend(env, projectDirFor(process.cwd()));
  if (process.platform === "linux") return new LinuxLocalBackend(cfg.socket_path, env);
  throw new CliError(
    ExitCode.UNSUPPORTED,
    `no world backend for ${process.platform} in this build`,
    "use --no-world",
  );
}
