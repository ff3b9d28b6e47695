/**
 * The Lima side of `substrate world warm|status|stop|restart` (macOS, or the hidden test
 * switch SUBSTRATE_TEST_LIMA_BACKEND=1 on Linux): the flags and the renderer; ./_run.ts runs
 * the action through the host backend (src/world/mac-lima.ts).
 */
import { consola } from "consola";
import type { LimaWorldReport } from "../../contract/index.ts";

export const commonArgs = {
  json: { type: "boolean", description: "print the report as JSON" },
} as const;

export const createArgs = {
  ...commonArgs,
  profile: { type: "string", description: "VM profile when creating it: slim (2 CPU, 2 GiB, 8 GiB) or dev (4, 4 GiB, 20 GiB)", default: "slim" },
  project: { type: "string", description: "project directory mounted writable into a new VM (default: this project)" },
} as const;

export function renderLima(r: LimaWorldReport): void {
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
