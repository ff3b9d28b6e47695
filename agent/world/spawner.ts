/**
 * The in-world spawner: the agent binary in its hidden `__world` mode, started by
 * `unshare ... --pid --fork` (see session.ts), in two stages.
 *
 * Stage 1 (`__world CONFIG`, privileged; spawner-setup.ts): binds the control socket while it can still see
 * the host path, builds and enters the world's root (rootfs.ts), hardens its JS thread
 * (no_new_privs, Landlock, capabilities, seccomp), switches that thread to the caller's
 * uid/gid/groups, and execve's the same binary as stage 2, handing over the listening socket
 * and the oom_score_adj fd.
 *
 * Stage 2 (`__world-serve STATE`): forks each command it is asked for.
 *
 * Why the re-exec (issue 14.1): credentials and Landlock domains are per THREAD, and Bun has
 * started its helper threads before any JS runs. Hardening the JS thread alone left threads
 * with every capability and no Landlock domain — a command that could write into the
 * spawner's memory (ptrace) hijacked one and had host root. execve keeps only the calling,
 * hardened thread; every thread stage 2 ever creates copies its credentials, domain and
 * seccomp filter. Stage 2 is also non-dumpable, and seccomp refuses ptrace/process_vm_* and
 * signals aimed at it, so a command can neither read nor stop it. The re-exec costs one Bun
 * start per world (not per command).
 */
import { createServer, type Socket } from "node:net";
import { constants as osConstants } from "node:os";
import { commandCgroupFromFds, oomGuardFromFd, type CommandCgroup, type OomGuard } from "./cgroups.ts";
import { encodeFrame, Frame, FrameDecoder, sendJson, type CtlExecRequest, type CtlExit } from "./ctl.ts";
import { drainBelow } from "../flow.ts"; // issue 18.4 (DEPLOY): back-pressure
import { openFds, PtyFlow } from "./ptyflow.ts"; // issue 18.4: a PTY is paused as a terminal would (tcflow)
import { PR, prctl, setCloexec } from "../../src/sys/libc.ts";
import { closeSync, existsSync } from "node:fs";
import { CMDEXEC_PATH, viaCmdexec } from "./cmdexec.ts";
import type { EgressNetBoot } from "../egress/netns.ts"; // issue 15 (EGRESS)
import { SCOPE_FD, sealedScopeFd } from "../scopes.ts";
import { CommandSlots, type SlotFds } from "./cmdslots.ts";
import type { Caller, FsView } from "../../src/contract/world.ts";

/** Everything the agent tells the spawner about the world it is to build. */
export interface WorldBootConfig {
  id: string;
  hostname: string;
  /** Empty host dir the world's root tmpfs is mounted on. */
  root: string;
  /** Control socket path (host filesystem). */
  ctl: string;
  project: string;
  projectReadOnly?: boolean;
  /** world_fs_isolation = "full": the whole host tree visible read-only (rootfs.ts). */
  fullHost?: boolean;
  resolvConf?: string;
  /** Isolated world: project is an overlay with upper/work on disk. */
  overlay?: { upper: string; work: string; userxattr?: boolean };
  /** Hardening applied to the spawner after pivot_root, inherited by all commands. */
  harden?: { mode: "baseline" | "isolated"; landlock: boolean; allowPtrace?: boolean };
  /**
   * Issue 13: who the world belongs to. A caller other than uid 0 gets a spawner (stage 2) and
   * commands running as exactly that uid/gid/groups, with no capabilities. Absent: stay root.
   */
  caller?: Caller;
  /**
   * How stage 1 re-execs this binary as stage 2 (argv before `__world-serve`), and the host
   * paths that must be visible read-only in the world for that (the binary; in dev mode bun
   * and the source tree). Set by session.ts from the agent's selfArgv.
   */
  reexec: { argv: string[]; ro: string[] };
  /** Issue 18.3 (DEPLOY): host path of the cgroup commands are forked into (cgroups.ts commandCgroup). */
  commandCgroup?: string;
  /** The agent's own paths (state dir, API socket, overlay base): hidden in the world (fsview.ts). */
  hide?: string[];
  /** Bring `lo` up before hardening (rootless worlds: nobody outside can, see session.ts). */
  loopbackUp?: boolean;
  /** Issue 15 (EGRESS, agent/egress/netns.ts): rootless worlds apply their lo-only egress netns (ip + nft) here. */
  egressNet?: EgressNetBoot;
  /** Issue 13 (FSVIEW, rootfs.ts/fsview.ts): the policy's fs view; absent = FsView defaults. */
  fsView?: FsView;
}

/** Hooks other modules register to take part in building the world. */
export interface SpawnerHooks {
  mountOverlay?: (o: { lower: string; upper: string; work: string; target: string; userxattr?: boolean }) => void;
  harden?: (cfg: WorldBootConfig, extra: { protectPids: number[] }) => unknown;
}

/** What stage 1 hands to stage 2 (argv JSON). */
export interface ServeState {
  ctlFd: number;
  oom: Pick<OomGuard, "applied" | "reason" | "self" | "commands"> & { fd?: number };
  harden: unknown;
  /** Issue 18.3 (DEPLOY): the command cgroup's fds, opened by stage 1 (cgroups.ts openCommandCgroup). */
  cgroup?: { mode: "v2" | "v1"; fds: number[] };
  /** Issue 14.2: one leaf cgroup per command below the command cgroup (cmdslots.ts). */
  slots?: SlotFds[];
}

// How long to keep forwarding output after the command exited, for background jobs that
// still hold the pipe (`server &`). After that, EXIT is sent and later output dropped.
const OUTPUT_GRACE_MS = 300;

function signalNumber(sig: string | null): number {
  if (!sig) return 0;
  return (osConstants.signals as Record<string, number>)[sig] ?? 0;
}

// Issue 14.2 (cmdexec.ts): present in every world whose root we built; absent → plain spawn.
const cmdexec = existsSync(CMDEXEC_PATH);

/**
 * The argv Bun.spawn runs: the helper, then the program resolved the way execvp would (the
 * command's own PATH, from its cwd) — the helper execs a path, it does no PATH search.
 */
function commandArgv(req: CtlExecRequest): string[] {
  if (!cmdexec || req.argv.length === 0) return req.argv;
  const first = req.argv[0]!;
  const program = first.includes("/") ? first : Bun.which(first, { PATH: req.env.PATH ?? "/usr/local/bin:/usr/bin:/bin", cwd: req.cwd });
  if (!program) throw Object.assign(new Error(`command not found: ${first}`), { code: "ENOENT" });
  return viaCmdexec(program, req.argv);
}

/** Starts one command; returns the handler for the caller's later frames. */
function runCommand(sock: Socket, req: CtlExecRequest): (type: number, payload: Buffer) => void {
  let proc: ReturnType<typeof Bun.spawn>;
  let slot: number | undefined;
  let finished = false;
  let timedOut = false;
  const send = (type: number, payload: Uint8Array) => {
    if (!finished && !sock.destroyed) sock.write(encodeFrame(type, payload));
  };
  // Issue 18.4: PTY output is paused while the ctl socket is backed up (the agent stopped
  // reading it: its client lags) by stopping the terminal (ptyflow.ts); the command blocks in
  // write(2) as on a terminal after XOFF. Started again once the socket drained.
  let ptyFlow: PtyFlow | undefined;
  let ptyEof!: () => void;
  const ptyClosed = new Promise<void>((resolve) => (ptyEof = resolve));
  const onPtyData = (data: Uint8Array) => {
    send(Frame.STDOUT, data);
    const flow = ptyFlow;
    if (!flow || flow.stopped || finished) return;
    const wait = drainBelow(sock);
    if (!wait) return;
    if (!flow.stop()) {
      ptyFlow = undefined; // the kernel refused: not paused (as before issue 18.4)
      return;
    }
    stalls++;
    stalled++;
    void wait.then(() => {
      stalled--;
      if (ptyFlow === flow) flow.start();
    });
  };
  // Issue 6: scope token → sealed memfd as the command's fd 3 (see agent/scopes.ts).
  let scopeFd: number | undefined;
  try {
    if (req.scope_token !== undefined) {
      scopeFd = sealedScopeFd(req.scope_token);
      req.env.SUBSTRATE_SCOPE_FD = String(SCOPE_FD);
    }
    const extra = scopeFd === undefined ? [] : [scopeFd];
    // Issue 14.2: through the per-command exec helper (cmdexec.ts): a Landlock domain of its own.
    const argv = commandArgv(req);
    // Issue 14.2: the command's own leaf cgroup when one is free (its leftovers are killed at
    // its end); else the shared command cgroup.
    slot = slots.acquire();
    const spawnIn = <T,>(f: (opt: { cgroup?: number }) => T): T => (slot !== undefined ? slots.spawnInto(slot, f) : cmdCgroup.spawn(f));
    // Commands are forked with the OOM-preferred score (cgroups.ts protectFromOom); the
    // spawner keeps its protection. Bun.spawn is synchronous, so the toggle is exact.
    const pty = req.pty;
    if (pty) {
      const fdsBefore = openFds(); // issue 18.4: tells the master this spawn opens (ptyflow.ts)
      proc = oom.unprotected(() => spawnIn((cg) => Bun.spawn(argv, {
        ...cg, // issue 18.3 / 14.2: into the command's cgroup
        cwd: req.cwd,
        env: req.env,
        ...(extra.length ? { stdio: ["inherit", "inherit", "inherit", ...extra] as ["inherit", "inherit", "inherit", number] } : {}),
        terminal: {
          cols: pty.cols,
          rows: pty.rows,
          data: (_t, data) => onPtyData(data),
          exit: () => ptyEof(), // the master's EOF: every byte was read
        },
      })));
      ptyFlow = PtyFlow.openedSince(fdsBefore);
    } else {
      proc = oom.unprotected(() => spawnIn((cg) => Bun.spawn(argv, {
        ...cg, // issue 18.3 / 14.2: into the command's cgroup
        cwd: req.cwd,
        env: req.env,
        stdio: ["pipe", "pipe", "pipe", ...extra],
        // Own process group, so a kill reaches the whole pipeline, not just bash.
        detached: true,
      })));
    }
  } catch (e) {
    if (scopeFd !== undefined) closeSync(scopeFd);
    if (slot !== undefined) slots.release(slot);
    const err = e as NodeJS.ErrnoException;
    sendJson(sock, Frame.ERROR, {
      code: err.code === "ENOENT" ? "not_found" : "spawn_failed",
      message: `cannot run ${req.argv[0]}: ${err.message}`,
    });
    sock.end();
    return () => {};
  }
  // The child holds its own fd 3 now; our copy goes, so the token lives only in the command.
  if (scopeFd !== undefined) closeSync(scopeFd);
  const pid = proc.pid;
  sendJson(sock, Frame.STARTED, { pid });

  const killGroup = (sig: NodeJS.Signals) => {
    try {
      process.kill(req.pty ? pid : -pid, sig);
    } catch {
      try {
        proc.kill(sig);
      } catch {}
    }
  };

  const pumps: Promise<void>[] = [];
  // Issue 18.4 (DEPLOY): while the agent is not reading (its client lags) the pipe is not read
  // either: the command blocks in write(2). `stalls`/`stalled` let the exit wait below tell
  // output held back by a lagging client (wait for it) from a background job holding the pipe
  // (grace, then EXIT, as before).
  let stalls = 0;
  let stalled = 0;
  if (req.pty) pumps.push(ptyClosed);
  else {
    const pump = async (stream: ReadableStream<Uint8Array>, type: number) => {
      for await (const chunk of stream) {
        send(type, chunk);
        const wait = drainBelow(sock);
        if (wait) {
          stalls++;
          stalled++;
          await wait;
          stalled--;
        }
      }
    };
    pumps.push(pump(proc.stdout as ReadableStream<Uint8Array>, Frame.STDOUT).catch(() => {}));
    pumps.push(pump(proc.stderr as ReadableStream<Uint8Array>, Frame.STDERR).catch(() => {}));
  }

  let timer: ReturnType<typeof setTimeout> | undefined;
  if (req.timeout_ms !== undefined) {
    timer = setTimeout(() => {
      timedOut = true;
      killGroup("SIGKILL");
    }, req.timeout_ms);
  }

  const stdinSink = req.pty ? undefined : (proc.stdin as import("bun").FileSink);
  const onFrame = (type: number, payload: Buffer) => {
    switch (type) {
      case Frame.STDIN:
        if (req.pty) proc.terminal?.write(payload);
        else stdinSink?.write(payload);
        break;
      case Frame.STDIN_EOF:
        if (req.pty) proc.terminal?.write("\x04");
        else void stdinSink?.end();
        break;
      case Frame.RESIZE: {
        const r = JSON.parse(payload.toString()) as { cols: number; rows: number };
        // Issue 6: a refused resize (e.g. an ioctl the sandbox denies) must not take the
        // command down with the ctl connection; report it on our stderr (agent log).
        try {
          proc.terminal?.resize(r.cols, r.rows);
        } catch (e) {
          process.stderr.write(`resize ${r.cols}x${r.rows} failed: ${(e as Error).message}\n`);
        }
        break;
      }
      case Frame.SIGNAL: {
        const s = JSON.parse(payload.toString()) as { signal: NodeJS.Signals };
        killGroup(s.signal);
        break;
      }
    }
  };
  // A caller that goes away takes its command with it.
  sock.on("close", () => {
    if (!finished) killGroup("SIGKILL");
  });
  // The agent only ends its side after EXIT (or by dropping the command): either way this
  // connection is over, and an unfinished command goes with it.
  sock.on("end", () => {
    if (!finished) killGroup("SIGKILL");
    sock.destroy();
  });

  void proc.exited.then(async (code) => {
    if (timer) clearTimeout(timer);
    // Issue 14.2: what the command left running dies with it unless the request keeps it:
    // everything in its cgroup slot, else (no slot) its process group.
    if (!req.keep_background) {
      if (slot !== undefined) await slots.kill(slot);
      else
        try {
          process.kill(-pid, "SIGKILL");
        } catch {}
    }
    if (slot !== undefined) slots.release(slot, req.keep_background); // kept processes hold it until they end
    // Issue 18.4 (DEPLOY): the grace is extended while output is held back (a lagging client).
    const all = Promise.all(pumps).then(() => true);
    for (;;) {
      const seen = stalls;
      if (await Promise.race([all, Bun.sleep(OUTPUT_GRACE_MS).then(() => false)])) break;
      if (stalls === seen && stalled === 0) break;
    }
    // The PTY's EOF (above) says every byte was read; the 5 ms it used to wait instead stay, so
    // EXIT keeps its old distance from the last output (a client that detaches right after it).
    if (req.pty) await Bun.sleep(5);
    const sig = (proc.signalCode as string | null) ?? null;
    const exit: CtlExit = {
      exit: sig ? 128 + signalNumber(sig) : (code ?? 1),
      signal: sig,
      ...(timedOut ? { timed_out: true } : {}),
    };
    sendJson(sock, Frame.EXIT, exit);
    finished = true;
    sock.end();
    if (req.pty) {
      ptyFlow?.start();
      proc.terminal?.close();
    }
  });
  return onFrame;
}

function onConnection(sock: Socket): void {
  // First frame decides what the connection is; later frames go to the command.
  let handler: ((type: number, payload: Buffer) => void) | undefined;
  const dec = new FrameDecoder((type, payload) => {
    if (handler) return handler(type, payload);
    if (type === Frame.LIFELINE) {
      // The agent holds this open for the world's whole life; losing it means the
      // agent is gone, and so must the world be.
      handler = () => {};
      // Half-open sockets: the agent going away shows up as `end`, not `close`.
      sock.on("end", () => process.exit(0));
      sock.on("close", () => process.exit(0));
      return;
    }
    let req: CtlExecRequest;
    try {
      if (type !== Frame.REQUEST) throw new Error("expected REQUEST");
      req = JSON.parse(payload.toString()) as CtlExecRequest;
    } catch {
      sock.destroy();
      return;
    }
    handler = runCommand(sock, req);
  });
  sock.on("data", (c: Buffer) => {
    try {
      dec.push(c);
    } catch {
      sock.destroy();
    }
  });
  sock.on("error", () => {});
}

/** Set in serveSpawner (from what stage 1, spawner-setup.ts, opened); the default (no protection) only matters for unit tests of runCommand. */
let oom: OomGuard = { applied: "none", self: 0, commands: 0, unprotected: (f) => f() };
/** Issue 18.3 (DEPLOY): set in serveSpawner; default: commands stay in the spawner's cgroup. */
let cmdCgroup: CommandCgroup = commandCgroupFromFds(undefined);
/** Issue 14.2: set in serveSpawner; default: no slots (leftovers found by process group). */
let slots = new CommandSlots("none", []);

/** Stage 2: serve the control socket; every thread of this process is hardened. */
export async function serveSpawner(cfg: WorldBootConfig, state: ServeState): Promise<void> {
  // Non-dumpable: ptrace, process_vm_* and /proc/<pid>/{mem,environ,fd,root} of this process
  // need CAP_SYS_PTRACE, which no command has (and seccomp refuses ptrace anyway).
  prctl(PR.SET_DUMPABLE, 0n);
  // Commands must not inherit the control socket or the oom fd.
  setCloexec(state.ctlFd, true);
  if (state.oom.fd !== undefined) {
    setCloexec(state.oom.fd, true);
    oom = oomGuardFromFd(state.oom.fd, state.oom);
  }
  for (const fd of state.cgroup?.fds ?? []) setCloexec(fd, true); // issue 18.3: commands never inherit them
  cmdCgroup = commandCgroupFromFds(state.cgroup?.mode, state.cgroup?.fds);
  slots = new CommandSlots(state.cgroup?.mode ?? "none", state.slots ?? [], state.cgroup?.mode === "v1" ? state.cgroup.fds[1] : undefined);
  for (const fd of slots.fds) setCloexec(fd, true); // issue 14.2: commands never inherit them
  // allowHalfOpen: after EXIT the spawner ends its side but keeps reading, so a frame the agent
  // sends at that moment (a late resize or stdin) lands instead of failing with EPIPE; the
  // connection closes once the agent ends its side too.
  const server = createServer({ pauseOnConnect: false, allowHalfOpen: true }, onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ fd: state.ctlFd }, () => resolve());
  });
  void cfg;
  process.stdout.write(`ready ${JSON.stringify({ harden: state.harden })}\n`);
}
