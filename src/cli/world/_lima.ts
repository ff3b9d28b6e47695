/**
 * The Lima side of `substrate world warm|status|stop|restart` (macOS, or the hidden test
 * switch SUBSTRATE_TEST_LIMA_BACKEND=1 on Linux): runs the action with consola progress
 * (quiet under --json) and renders the result. Linux hosts use ./_linux.ts.
 */
import { consola } from "consola";
import type { LimaProfileName, LimaWorldReport } from "../../contract/index.ts";
import { CliError, ExitCode } from "../_errors.ts";
import { getGlobals } from "../_globals.ts";
import { projectDirFor } from "../_project.ts";

export type LimaCommand = "warm" | "status" | "stop" | "restart";

export const usesLima = (env: NodeJS.ProcessEnv = process.env): boolean =>
  process.platform === "darwin" || env.SUBSTRATE_TEST_LIMA_BACKEND === "1";

export const commonArgs = {
  json: { type: "boolean", description: "print the report as JSON" },
} as const;

export const createArgs = {
  ...commonArgs,
  profile: { type: "string", description: "VM profile when creating it: slim (2 CPU, 2 GiB, 8 GiB) or dev (4, 4 GiB, 20 GiB)", default: "slim" },
  project: { type: "string", description: "project directory mounted writable into a new VM (default: this project)" },
} as const;

function render(r: LimaWorldReport): void {
  const l = r.layout;
  if (r.command === "stop") {
    consola.success(r.actions.includes("stopped") ? `Lima VM '${r.instance}' stopped` : `Lima VM '${r.instance}' is ${r.vm_status}; nothing to stop`);
    return;
  }
  if (r.ok) {
    const what = r.actions.length ? r.actions.join(", ") : "nothing to do";
    consola.success(`world VM '${r.instance}' ready (${what}; ${r.duration_ms} ms)${l?.agent_version ? ` — agent ${l.agent_version}` : ""}`);
    return;
  }
  consola.warn(`world VM '${r.instance}': ${r.vm_status}`);
  for (const p of l?.problems ?? []) consola.warn(p);
}

export async function runLima(cmd: LimaCommand, args: { json?: boolean; profile?: string; project?: string }): Promise<void> {
  const json = !!args.json || getGlobals().json;
  const profile = (args.profile ?? "slim") as LimaProfileName;
  if (profile !== "slim" && profile !== "dev") throw new CliError(ExitCode.USAGE, `unknown profile ${profile}`, "use --profile slim or --profile dev");
  // Linux hosts go to src/cli/world/_linux.ts (the lifecycle modes) before reaching here.
  if (!usesLima()) throw new CliError(ExitCode.INTERNAL, "runLima called on a non-Lima host", "report this");

  const { LimaWorld, LimaWorldError } = await import("../../lima/world.ts");
  const progress = json
    ? { step() {}, ok() {}, warn() {}, debug() {} }
    : { step: (m: string) => consola.start(m), ok: (m: string) => consola.success(m), warn: (m: string) => consola.warn(m), debug: (m: string) => consola.debug(m) };
  const world = new LimaWorld({ progress, profile, project: args.project ?? projectDirFor(process.cwd()) });
  let report: LimaWorldReport;
  try {
    report = cmd === "warm" ? await world.warm() : cmd === "status" ? await world.status() : cmd === "stop" ? await world.stop() : await world.restart();
  } catch (e) {
    if (e instanceof LimaWorldError) {
      if (json && e.report) console.log(JSON.stringify({ ...e.report, ok: false, error: { message: e.message, hint: e.hint } }));
      throw new CliError(e.exitCode, e.message, e.hint);
    }
    throw e;
  }
  if (json) console.log(JSON.stringify(report));
  else render(report);
  // status: unhealthy or not running is "agent unreachable" (3), like world doctor.
  if (!report.ok) process.exitCode = ExitCode.UNAVAILABLE;
}
