/**
 * Stage 1 of the in-world spawner (`__world CONFIG`, see spawner.ts for the whole story):
 * bind the control socket while the host path is visible, build and enter the world's root,
 * harden this (the JS) thread, become the caller, and execve the same binary as stage 2.
 * Its own module so that stage 2 — started once per world — loads none of this (rootfs, fs
 * view, netns setup): the binary is built with --splitting, dynamic imports load lazily.
 */
import { createServer, type Server } from "node:net";
import { dirname, join } from "node:path";
import { buildRootfs, fullHostDirs } from "./rootfs.ts";
import { openCommandCgroup, protectFromOom } from "./cgroups.ts";
import { execve, sethostname, setCloexec, setThreadIdentity } from "../../src/sys/libc.ts";
import { applyEgressNet } from "../egress/netns.ts"; // issue 15 (EGRESS)
import { openSlots } from "./cmdslots.ts";
import { CMDEXEC_PATH, cmdexecElf } from "./cmdexec.ts";
import type { ServeState, SpawnerHooks, WorldBootConfig } from "./spawner.ts";

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
}

/** Stage 1: build the world, harden, become the caller, re-exec as stage 2. Never returns. */
export async function runSpawner(cfg: WorldBootConfig, hooks: SpawnerHooks = {}): Promise<never> {
  // The OOM killer must pick the command, never the spawner (the world's lifeline holder).
  // Opened before Landlock: afterwards /proc/self/oom_score_adj can't be opened for writing.
  const guard = protectFromOom();
  // Issue 18.3 (DEPLOY): the command cgroup, opened while the host tree is visible (crosses execve).
  const cgroup = openCommandCgroup(cfg.commandCgroup);
  // Issue 14.2: one leaf cgroup per command below it (cmdslots.ts).
  const slotFds = cgroup && cfg.commandCgroup ? openSlots(cfg.commandCgroup, cgroup.mode, cfg.caller) : [];
  // Bound while the host path is visible; stage 2 serves it (the fd crosses execve).
  const server = createServer();
  await listen(server, cfg.ctl);
  const ctlFd = (server as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof ctlFd !== "number" || ctlFd < 0) throw new Error("spawner: cannot get the control socket's fd");

  const built = buildRootfs({
    // FSVIEW: the caller's home + the policy's fs view; placeholders recorded in the world dir
    caller: cfg.caller,
    fsView: cfg.fsView,
    placeholderFile: join(dirname(cfg.root), "placeholders.json"),
    ...(cfg.hide ? { hide: cfg.hide } : {}),
    // Issue 14.2: every command starts through this helper, in a Landlock domain of its own.
    files: [{ path: CMDEXEC_PATH, data: cmdexecElf(), mode: 0o555 }],
    root: cfg.root,
    project: cfg.project,
    projectReadOnly: cfg.projectReadOnly,
    resolvConf: cfg.resolvConf,
    extraRo: [...(cfg.fullHost ? fullHostDirs() : []), ...cfg.reexec.ro],
    projectOverlay: cfg.overlay
      ? (target) => {
          if (!hooks.mountOverlay) throw new Error("isolated world requested but overlay support is not built in");
          hooks.mountOverlay({ lower: cfg.project, upper: cfg.overlay!.upper, work: cfg.overlay!.work, target, userxattr: cfg.overlay!.userxattr });
        }
      : undefined,
  });
  for (const w of built.warnings) process.stderr.write(`fs view: ${w}\n`); // FSVIEW
  sethostname(cfg.hostname);
  // Issue 15 (EGRESS): rootless world: lo + synthetic address + local route + nft backstop,
  // applied while this process still holds the user namespace's capabilities.
  if (cfg.egressNet) {
    const err = applyEgressNet(cfg.egressNet);
    if (err) process.stderr.write(`egress: world network setup failed (${err}); the world has loopback only\n`);
  }
  if (cfg.loopbackUp) {
    const lo = Bun.spawnSync(["ip", "link", "set", "lo", "up"], { stdout: "ignore", stderr: "pipe" });
    if (lo.exitCode !== 0) process.stderr.write(`network: loopback stays down: ${lo.stderr.toString().trim()}\n`);
  }
  // PID 1 (the world's init) and this process (same pid after execve) are out of reach of
  // every command's kill/tgkill/pidfd_open/prlimit (seccomp.ts).
  let report: unknown = null;
  if (cfg.harden && hooks.harden) report = hooks.harden(cfg, { protectPids: [1, process.pid] });
  // Become the caller on this (the JS) thread only: the execve below keeps just this thread.
  // setresuid away from 0 clears every capability; execve as non-root grants none back.
  // (A rootless agent's world already runs as its only caller: nothing to switch.)
  if (cfg.caller && cfg.caller.uid !== 0 && process.getuid?.() !== cfg.caller.uid) setThreadIdentity(cfg.caller.uid, cfg.caller.gid, cfg.caller.groups);
  const state: ServeState = {
    ctlFd,
    oom: { applied: guard.applied, ...(guard.reason ? { reason: guard.reason } : {}), self: guard.self, commands: guard.commands, ...(guard.fd !== undefined ? { fd: guard.fd } : {}) },
    harden: report,
    ...(cgroup ? { cgroup } : {}),
    ...(slotFds.length ? { slots: slotFds } : {}),
  };
  setCloexec(ctlFd, false);
  if (guard.fd !== undefined) setCloexec(guard.fd, false);
  for (const fd of cgroup?.fds ?? []) setCloexec(fd, false);
  for (const s of slotFds) setCloexec(s.join, false);
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  execve(cfg.reexec.argv[0]!, [...cfg.reexec.argv, "__world-serve", JSON.stringify(cfg), JSON.stringify(state)], env);
}

