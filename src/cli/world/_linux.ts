/**
 * The Linux side of `substrate world warm|stop|restart|status` (src/lifecycle/): the flags
 * and the renderers; ./_run.ts runs the action through the host backend.
 */
import { consola } from "consola";
import type { LifecycleMode } from "../../contract/index.ts";
import { CliError, ExitCode } from "../_errors.ts";

/** warm/restart only. */
export const LINUX_ARGS = {
  mode: { type: "string", description: "Linux: force a mode: socket_activation | manual | rootless", valueHint: "MODE" },
  writable: { type: "string", description: "Linux socket_activation: also keep DIR writable for worlds (repeatable)", valueHint: "DIR" },
} as const;

const MODES = ["socket_activation", "manual", "rootless"] as const;

export function parseMode(v: unknown): LifecycleMode | undefined {
  if (v === undefined || v === "" || v === true) return undefined;
  if (typeof v === "string" && (MODES as readonly string[]).includes(v)) return v as LifecycleMode;
  throw new CliError(ExitCode.USAGE, `unknown --mode ${String(v)}`, `use one of: ${MODES.join(", ")}`);
}

/** citty collects a repeated string flag as an array (or one string). */
export const listArg = (v: unknown): string[] => (v === undefined ? [] : Array.isArray(v) ? v.map(String) : [String(v)]);

/** One line (and the guidance) after warm/stop/restart. */
export function printLifecycle(cmd: string, report: import("../../contract/index.ts").LifecycleReport): void {
  const did = report.actions.length ? report.actions.join(", ") : "nothing to do";
  consola.success(
    `${cmd}: ${report.mode} mode, ${report.socket_path}${report.pid ? ` (pid ${report.pid})` : ""}${report.agent_version ? `, agent ${report.agent_version}` : ""}: ${did}`,
  );
  for (const g of report.guidance) consola.info(g);
}

export function printStatus(r: import("../../contract/index.ts").WorldStatusReport): void {
  const line = (k: string, v: string) => console.log(`${k.padEnd(10)} ${v}`);
  line("backend", r.backend);
  line("mode", r.mode ?? "none (no agent)");
  line("agent", r.running ? `${r.agent.version} (pid ${r.agent.pid ?? "?"}, up ${Math.round((r.agent.uptime_ms ?? 0) / 1000)} s)` : "not running");
  line("embedded", `${r.agent.embedded_version ?? "?"}${r.agent.version_match === false ? "  ← differs: run substrate world warm" : ""}`);
  line("socket", r.socket.exists ? `${r.socket.path} ${r.socket.owner}:${r.socket.group} ${r.socket.mode}` : `${r.socket.path} (missing)`);
  if (r.units) line("units", `socket ${r.units.socket} (${r.units.socket_enabled}), service ${r.units.service}`);
  line("worlds", String(r.worlds.length));
  // issue 18.6 (DEPLOY): idle session worlds are retired after the TTL
  if (r.idle) line("idle", `${r.idle.idle} now, ${r.idle.retired} retired, ttl ${r.idle.ttl_secs > 0 ? `${r.idle.ttl_secs} s` : "off"}`);
  for (const w of r.worlds) {
    console.log(`  ${w.id}  ${w.project_dir}  age ${Math.round(w.age_ms / 1000)} s  execs ${w.execs}${w.isolated ? "  isolated" : ""}${w.isolate_network ? "" : "  host-network"}`);
    const lim = w.limits ? Object.entries(w.limits).map(([k, v]) => `${k}=${v}`).join(" ") : "";
    if (lim) console.log(`      limits: ${lim}`);
    if (w.mounts?.length) console.log(`      mounts: ${w.mounts.filter((m) => !/^\/(proc|dev)\//.test(m)).join(", ")}`);
    for (const warn of w.warnings ?? []) console.log(`      degraded: ${warn}`);
  }
  for (const d of r.degraded) console.log(`degraded   ${d}`);
  if (r.error) {
    console.log(`error      ${r.error.message}`);
    console.log(`fix        ${r.error.hint}`);
  }
}
