/**
 * Renders the embedded Lima profile for `limactl start`: the project directory becomes the
 * writable mount (`${SUBSTRATE_PROJECT}`), or that mount is dropped when there is none.
 * Also derives the guest's writable mount points, which the provision step adds to the
 * agent's ReadWritePaths (ProtectSystem=strict makes everything else read-only).
 */
import { homedir, userInfo } from "node:os";
import { dirname, join, resolve } from "node:path";

/** Mount points Lima refuses (pkg/limayaml/validate.go), plus the guest home (checked below). */
export const LIMA_RESERVED_MOUNTS = ["/", "/bin", "/dev", "/etc", "/home", "/opt", "/sbin", "/tmp", "/usr", "/var"];

export interface ProjectCheck {
  /** The path to mount writable (null: none, e.g. no project or the project is $HOME). */
  mount: string | null;
  error?: string;
  hint?: string;
}

/**
 * Whether `project` may become the VM's writable mount. Lima rejects a mountPoint of `/`, /tmp,
 * /opt, /usr, /var, /etc, /home, /bin, /sbin, /dev and the guest home, and `limactl start` would
 * fail on it; an ancestor of $HOME (such as /Users) would put every user's home in the VM,
 * writable. Both are refused here, before Lima is touched. $HOME itself is already mounted
 * read-only: no writable mount then (the project is the home).
 */
export function checkProjectMount(project: string | null, home: string = homedir(), user: string = safeUser()): ProjectCheck {
  if (!project) return { mount: null };
  const p = resolve(project);
  const h = resolve(home);
  const hint = "run substrate from inside a project directory (e.g. cd ~/src/myproject), or pass --project DIR to `substrate world warm`";
  if (p === h) return { mount: null };
  if (LIMA_RESERVED_MOUNTS.includes(p) || p === `/home/${user}.guest` || p === `/home/${user}.linux`)
    return { mount: null, error: `the project directory ${p} cannot be mounted into the Lima VM: Lima refuses system paths (/, /tmp, /opt, /usr, /var, /etc, /home, …) as mounts`, hint };
  if (h.startsWith(p === "/" ? "/" : `${p}/`))
    return { mount: null, error: `the project directory ${p} contains your home directory (and every other user's under it): substrate will not mount it writable into the Lima VM`, hint };
  if (dirname(p) === "/" && ["/private", "/System", "/Library", "/Applications", "/Volumes", "/cores"].includes(p))
    return { mount: null, error: `the project directory ${p} is a macOS system directory: substrate will not mount it writable into the Lima VM`, hint };
  return { mount: p };
}
function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return "";
  }
}

/** `images[].location` of a Lima profile (for the download progress). */
export function imageUrls(text: string): string[] {
  try {
    const y = Bun.YAML.parse(text) as { images?: { location?: unknown }[] } | null;
    return (y?.images ?? []).map((i) => i?.location).filter((l): l is string => typeof l === "string");
  } catch {
    return [];
  }
}

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

/**
 * Exactly what guest-assets/provision.sh writes for these paths. Always a drop-in: besides the
 * writable project mounts, the guest home must stay writable for worlds, whose `fs.write`
 * caches (~/.cache/npm, ~/.cargo …) are binds of the guest user's home — and with the unit's
 * `ProtectHome=read-only`, `ReadWritePaths=/home` does not win (measured on the Linux host, see
 * src/lifecycle/systemd.ts renderDropin), so ProtectHome goes off as on a Linux host.
 */
export function mountsDropin(paths: string[]): string {
  const sorted = [...new Set([...paths, GUEST_HOMES])].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return `# Written by substrate provision.sh: writable project mounts and the guest home.\n[Service]\nProtectHome=no\nReadWritePaths=${sorted.map((p) => `-${p}`).join(" ")}\n`;
}
/** Where Lima puts the guest user's home (/home/<user>.guest or .linux). */
export const GUEST_HOMES = "/home";
