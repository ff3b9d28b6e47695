/**
 * Renders the embedded Lima profile for `limactl start`: the project directory becomes the
 * writable mount (`${SUBSTRATE_PROJECT}`), or that mount is dropped when there is none.
 * Also derives the guest's writable mount points, which the provision step adds to the
 * agent's ReadWritePaths (ProtectSystem=strict makes everything else read-only).
 */
import { homedir } from "node:os";
import { join, resolve } from "node:path";

const PROJECT_MOUNT = /^(\s*)- location: "\$\{SUBSTRATE_PROJECT\}"\n(\s*writable: true\n)?/m;

export function renderProfile(text: string, project: string | null): string {
  if (!PROJECT_MOUNT.test(text)) return text;
  if (!project || project === homedir()) return text.replace(PROJECT_MOUNT, "");
  return text.replace(PROJECT_MOUNT, (_m, indent: string, w: string | undefined) => `${indent}- location: ${JSON.stringify(project)}\n${w ?? ""}`);
}

/** Guest paths of the `writable: true` mounts of an instance's config (Lima: same path
 * as on the host unless `mountPoint` is set; "~" is the host home). */
export function writableMounts(config: Record<string, unknown> | undefined, home: string = homedir()): string[] {
  const mounts = Array.isArray(config?.mounts) ? (config!.mounts as unknown[]) : [];
  const expand = (p: string) => (p === "~" ? home : p.startsWith("~/") ? join(home, p.slice(2)) : p);
  const out = new Set<string>();
  for (const m of mounts) {
    if (!m || typeof m !== "object") continue;
    const { location, mountPoint, writable } = m as Record<string, unknown>;
    if (writable !== true || typeof location !== "string") continue;
    out.add(resolve(expand(typeof mountPoint === "string" && mountPoint ? mountPoint : location)));
  }
  return [...out].sort();
}

/** Exactly what guest-assets/provision.sh writes for these paths (null: no drop-in). */
export function mountsDropin(paths: string[]): string | null {
  if (!paths.length) return null;
  const sorted = [...new Set(paths)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return `# Written by substrate provision.sh: writable project mounts.\n[Service]\nReadWritePaths=${sorted.map((p) => `-${p}`).join(" ")}\n`;
}
