/**
 * `substrate world verify [--json]` — the enforcement self-test (src/verify/): PASS/FAIL per
 * guarantee in a fresh world, doctor text format. Exit 0 only when no check failed; 4 when a
 * guarantee does not hold; 3 when no agent answers (run `substrate world warm`).
 */
import { defineCommand } from "citty";
import { CliError, ExitCode } from "../_errors.ts";
import { getGlobals } from "../_globals.ts";

export default defineCommand({
  meta: {
    name: "verify",
    description: "Enforcement self-test in a fresh world: PASS/FAIL per guarantee. Exit 0 all hold, 4 one fails, 3 agent unreachable",
  },
  args: { json: { type: "boolean", description: "print the VerifyReport JSON" } },
  async run({ args }) {
    const json = Boolean(args.json) || getGlobals().json;
    const [{ effectiveConfig }, { selectBackend }, { WorldUnavailable }, { runVerify, VerifyFailed }] = await Promise.all([
      import("../../config.ts"),
      import("../_backend.ts"),
      import("../../world/backend.ts"),
      import("../../verify/index.ts"),
    ]);
    const cfg = effectiveConfig();
    if (!cfg.world_enabled)
      throw new CliError(ExitCode.UNSUPPORTED, `world isolation is disabled (${cfg.world_enabled_source}); there is no world to verify`, "unset SUBSTRATE_WORLD / set [world] enabled = true, or pass --world");
    let ready;
    try {
      ready = await selectBackend(cfg).ensureReady({ start: false });
    } catch (e) {
      if (e instanceof WorldUnavailable) throw new CliError(ExitCode.UNAVAILABLE, e.message, e.hint);
      throw e;
    }
    try {
      // macOS: the throwaway project must be visible in the VM, i.e. inside the mounted project.
      const { projectDirFor } = await import("../_project.ts");
      const baseDir = ready.backend === "linux-local" ? undefined : projectDirFor(process.cwd());
      const r = await runVerify({ env: process.env, cwd: process.cwd(), baseDir, target: { client: ready.client, backend: ready.backend, socketPath: ready.socketPath } });
      process.stdout.write(json ? `${JSON.stringify(r.report, null, 2)}\n` : r.text);
      process.exitCode = r.exitCode;
    } catch (e) {
      if (e instanceof VerifyFailed) throw new CliError(e.exitCode, e.message, "substrate world doctor   # then: substrate world restart");
      if ((e as Error).name === "PolicyError") throw new CliError(ExitCode.USAGE, (e as Error).message, "fix the policy: substrate policy validate");
      throw e;
    }
  },
});
