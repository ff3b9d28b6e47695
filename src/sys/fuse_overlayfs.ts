/**
 * `fuse-overlayfs` (Debian package fuse-overlayfs): the fallback when the kernel overlay cannot
 * be mounted (old kernels, some container/VM stacks). Same lower/upper/work layout as the kernel
 * overlay, so the fs diff reads the same upper dir.
 *
 * Traps:
 * - It daemonizes: the command returns once the mount is live, the daemon keeps serving it.
 *   Unmounting (umount2 as root, or `fusermount3 -u`) ends the daemon. A daemon left running
 *   pins the mount namespace it lives in; start it inside the world's PID namespace so it dies
 *   with the world's init.
 * - Upper-dir markers differ from the kernel's (measured, fuse-overlayfs 1.10 as root):
 *   whiteouts are 0/0 char devices like the kernel's (`.wh.<name>` files when mknod is not
 *   permitted), opaque dirs get `trusted.overlay.opaque=y` (`user.fuseoverlayfs.opaque` when
 *   unprivileged) AND a `.wh..wh..opq` file plus a `.wh..opq` 0/0 char device. agent/world/fsdiff.ts
 *   reads all of them when told the strategy was "fuse".
 * - It does not implement redirect_dir: a renamed lower dir is copied up + whited out, the same
 *   as the kernel with redirect_dir=off.
 */
import { existsSync } from "node:fs";

export interface FuseOverlayMount {
  lower: string;
  upper: string;
  work: string;
  target: string;
}

export class FuseOverlayfsError extends Error {
  constructor(
    readonly argv: string[],
    readonly stderr: string,
    message: string,
  ) {
    super(message);
    this.name = "FuseOverlayfsError";
  }
}

export const fuseOverlayfsBinary = (): string | null => Bun.which("fuse-overlayfs");
export const fuseDeviceAvailable = (): boolean => existsSync("/dev/fuse");

/** `-o` data string; shared with the probe so both mount exactly the same way. */
export const fuseOverlayfsOptions = (m: Omit<FuseOverlayMount, "target">): string =>
  `lowerdir=${m.lower},upperdir=${m.upper},workdir=${m.work}`;

/** nosuid,nodev like the kernel overlay mount (generic FUSE mount options). */
export const fuseOverlayfsArgv = (m: FuseOverlayMount): string[] => [
  "fuse-overlayfs",
  "-o",
  `${fuseOverlayfsOptions(m)},nosuid,nodev`,
  m.target,
];

/** Mounts synchronously (the spawner's rootfs builder is synchronous); throws FuseOverlayfsError. */
export function mountFuseOverlay(m: FuseOverlayMount): void {
  const bin = fuseOverlayfsBinary();
  const argv = fuseOverlayfsArgv(m);
  if (bin === null) {
    throw new FuseOverlayfsError(argv, "", "fuse-overlayfs not found on PATH: run scripts/setup.sh (apt-get install fuse-overlayfs)");
  }
  if (!fuseDeviceAvailable()) {
    throw new FuseOverlayfsError(argv, "", "/dev/fuse is missing: load the fuse module (modprobe fuse) or expose /dev/fuse to this machine");
  }
  const r = Bun.spawnSync([bin, ...argv.slice(1)], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) {
    const stderr = r.stderr.toString().trim();
    throw new FuseOverlayfsError(argv, stderr, `${argv.join(" ")} failed (exit ${r.exitCode}): ${stderr || "no stderr"}`);
  }
}
