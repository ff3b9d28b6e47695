/** What this kernel offers a world; read from /proc and /sys, never guessed. */
import { existsSync, readFileSync } from "node:fs";
import { release } from "node:os";
import type { CgroupMode, Features } from "../src/contract/index.ts";
import { NR, sys } from "../src/sys/libc.ts";

const read = (p: string): string | null => {
  try {
    return readFileSync(p, "utf8");
  } catch {
    return null;
  }
};

export function cgroupMode(): CgroupMode {
  const mounts = read("/proc/self/mounts") ?? "";
  const at = (path: string, type: string) => mounts.split("\n").some((l) => l.split(" ")[1] === path && l.split(" ")[2] === type);
  if (at("/sys/fs/cgroup", "cgroup2")) return "v2";
  const v1 = mounts.split("\n").some((l) => l.split(" ")[2] === "cgroup");
  if (v1 && at("/sys/fs/cgroup/unified", "cgroup2")) return "hybrid";
  return v1 ? "v1" : "none";
}

/** Landlock ABI via landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION). */
export function landlockAbi(): number | null {
  try {
    const v = sys(NR.landlock_create_ruleset, 0n, 0n, 1n);
    return v > 0 ? v : null;
  } catch {
    return null;
  }
}

export function detectFeatures(): Features {
  const ns = (n: string) => existsSync(`/proc/self/ns/${n}`);
  const maxUserNs = Number((read("/proc/sys/user/max_user_namespaces") ?? "0").trim());
  const abi = landlockAbi();
  return {
    namespaces: { mount: ns("mnt"), pid: ns("pid"), uts: ns("uts"), ipc: ns("ipc"), net: ns("net"), user: ns("user") && maxUserNs > 0 },
    overlay: /\toverlay\n/.test(read("/proc/filesystems") ?? ""),
    fuse_overlayfs: existsSync("/dev/fuse") && Bun.which("fuse-overlayfs") !== null,
    cgroup: cgroupMode(),
    nft: Bun.which("nft", { PATH: "/usr/sbin:/sbin:/usr/bin:/bin" }) !== null,
    landlock: { supported: abi !== null, abi },
    seccomp: /^Seccomp:/m.test(read("/proc/self/status") ?? ""),
    pty: true,
  };
}

export const kernelRelease = (): string => release();
