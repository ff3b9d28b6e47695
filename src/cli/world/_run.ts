/**
 * `substrate world warm|stop|restart|status`: one host-backend action (src/world/backend.ts
 * `lifecycle`; the platform is chosen once, in src/world/select.ts), rendered for humans or
 * as the backend's JSON report. Linux: the lifecycle modes (src/lifecycle/); macOS: the VM.
 */
import { consola } from "consola";
import type { BackendAction, BackendOutcome } from "../../world/backend.ts";
import { CliError, ExitCode } from "../_errors.ts";
import { getGlobals } from "../_globals.ts";
import { parseMode, listArg, printLifecycle, printStatus } from "./_linux.ts";
import { renderLima } from "./_lima.ts";

export interface WorldActionArgs {
  json?: boolean;
  mode?: unknown;
  writable?: unknown;
  profile?: string;
  project?: string;
}

export async function runWorldAction(action: BackendAction, args: WorldActionArgs): Promise<number> {
  const json = Boolean(args.json) || getGlobals().json;
  const profile = args.profile ?? "slim";
  if (profile !== "slim" && profile !== "dev") throw new CliError(ExitCode.USAGE, `unknown profile ${profile}`, "use --profile slim or --profile dev");
  const mode = parseMode(args.mode);
  const progress = json
    ? { step() {}, ok() {}, warn() {}, debug() {} }
    : { step: (m: string) => consola.start(m), ok: (m: string) => consola.success(m), warn: (m: string) => consola.warn(m), debug: (m: string) => consola.debug(m) };
  const [{ effectiveConfig }, { selectBackend }] = await Promise.all([import("../../config.ts"), import("../_backend.ts")]);
  const backend = selectBackend(effectiveConfig({}));
  const out: BackendOutcome = await backend.lifecycle(action, { progress, ...(mode ? { mode } : {}), writable: listArg(args.writable), profile, ...(args.project ? { project: args.project } : {}) });
  switch (out.kind) {
    case "linux-status":
      if (json) console.log(JSON.stringify(out.report, null, 2));
      else printStatus(out.report);
      return out.exitCode;
    case "linux-lifecycle":
      if (json) {
        console.log(JSON.stringify(out.report, null, 2));
        return out.exitCode;
      }
      if (out.report.error) throw new CliError(out.exitCode, out.report.error.message, out.report.error.hint);
      printLifecycle(action, out.report);
      return out.exitCode;
    case "lima":
      if (out.error) {
        if (json && out.report) console.log(JSON.stringify({ ...out.report, ok: false, error: out.error }));
        throw new CliError(out.exitCode, out.error.message, out.error.hint);
      }
      if (json) console.log(JSON.stringify(out.report));
      else if (out.report) renderLima(out.report);
      return out.exitCode;
  }
}
