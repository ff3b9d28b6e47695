/**
 * A world as the agent sees it: one `unshare` process tree with its own mount, PID, UTS,
 * IPC and (usually) network namespaces, a spawner inside it, and a control socket.
 *
 *   unshare --mount --uts --ipc --pid --net --fork --kill-child --propagation private
 *     └─ bash (PID 1 of the world: reaps orphans; exits when the spawner exits)
 *          └─ <agent> __world CONFIG   (spawner: builds root, pivot_root, forks commands)
 *
 * Teardown closes the lifeline connection: the spawner exits, PID 1 exits, and the kernel
 * kills everything left in the PID namespace. The mounts lived only in the world's mount
 * namespace, so they vanish with it; nothing was ever mounted in the host's.
 */
import { createConnection, type Socket } from "node:net";
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, realpathSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { newWorldId, type WorldSpec } from "../../src/contract/index.ts";
import type { Caller } from "../../src/contract/world.ts";
import { encodeFrame, Frame, FrameDecoder, type CtlExecRequest, type CtlExit } from "./ctl.ts";
import type { WorldBootConfig } from "./spawner.ts";
import { removePlaceholders } from "./fsview.ts";
import { worldLimits } from "./limits.ts";
import { confineWorld, type WorldConfinement } from "./confine.ts";
import { parseMemory } from "./cgroups.ts";
import { userNamespaceSupport } from "./userns.ts";
// Issue 15 (EGRESS): the world's network is lo-only; egress goes through the agent's gateway.
import { EgressPrereqError, egressNetBoot, egressPolicyOf, prepareResolvConf, setupWorldEgress, type WorldEgress } from "../egress/world.ts";
import type { EgressSummary } from "../../src/contract/net.ts";

export interface WorldOptions {
  spec: WorldSpec;
  /** Use this id (isolated worlds pick it first to name their overlay dirs). */
  id?: string;
  /** Per-agent state dir; worlds live under `<stateDir>/worlds/<id>`. */
  stateDir: string;
  /** argv that runs this agent binary (compiled: [exe]; dev: [bun, main.ts]). */
  selfArgv: string[];
  /** Isolated world: the project is an overlay (see overlay.ts). */
  overlay?: { upper: string; work: string; userxattr?: boolean };
  harden?: WorldBootConfig["harden"];
  log?: (msg: string) => void;
  /** The agent's own paths, hidden in the world whatever the view (state dir, API socket, overlay base). */
  hide?: string[];
  /** Issue 13: whose world this is; commands run as this identity (absent: the agent's own). */
  caller?: Caller;
  /** Network options beyond the spec (tests point the gateway's resolver at their own upstream, "ip[:port]"). */
  network?: { upstreamDns?: string };
}

let usernsSupport: boolean | undefined;
/**
 * Worlds of a root agent get a user namespace when the kernel allows one and the project
 * belongs to a regular user: world root is then that user on the host (userns.ts
 * worldIdMap), so root in the world is not root on the host. A root-owned project keeps the
 * plain model (host root with capabilities dropped, Landlock, seccomp): host root is not
 * mapped into a user namespace, so the project would turn read-only. SUBSTRATE_WORLD_USERNS=0
 * turns it off. Rootless agents always use one (see the unshare argv below).
 */
export function wantUserns(projectDir: string): boolean {
  if (process.getuid?.() !== 0 || process.env.SUBSTRATE_WORLD_USERNS === "0") return false;
  try {
    if (statSync(projectDir).uid === 0) return false;
  } catch {
    return false;
  }
  usernsSupport ??= userNamespaceSupport().available;
  return usernsSupport;
}

/** Tasks a world needs for itself, added to a caller's pids limit. */
export const WORLD_OWN_PIDS = 32;
/** Memory the world's own spawner uses (a Bun process, ~45 MB RSS), added to a memory limit. */
export const WORLD_OWN_MEMORY = 64 * 1024 * 1024;

/**
 * The cgroup holds the world's own tasks too (unshare, PID 1, the spawner and its threads):
 * give them headroom, so `limits` bound the commands rather than Substrate itself.
 */
export function withOwnHeadroom(l: WorldSpec["limits"]): WorldSpec["limits"] {
  return {
    ...l,
    ...(l.pids !== undefined ? { pids: l.pids + WORLD_OWN_PIDS } : {}),
    ...(l.memory !== undefined ? { memory: String(parseMemory(l.memory) + WORLD_OWN_MEMORY) } : {}),
  };
}

/**
 * How the spawner re-execs itself inside the world (spawner.ts, issue 14.1) and what must be
 * visible there read-only for it: the compiled binary; in dev mode bun and the source tree
 * (agent/main.ts imports ../src and node_modules).
 */
export function reexecOf(selfArgv: string[]): WorldBootConfig["reexec"] {
  const argv = selfArgv.map((a, i) => (i === 0 ? realpathSync(a) : a));
  const ro = [argv[0]!];
  if (argv.length > 1) {
    // the source tree: the nearest dir above the entry script with a package.json
    let d = dirname(realpathSync(argv[1]!));
    while (d !== "/" && !existsSync(join(d, "package.json"))) d = dirname(d);
    ro.push(d === "/" ? dirname(realpathSync(argv[1]!)) : d);
  }
  return { argv, ro };
}

export class WorldStartError extends Error {
  override name = "WorldStartError";
}

/** The world died under a running command (its spawner was killed). */
export class WorldLostError extends WorldStartError {
  override name = "WorldLostError";
}

export interface ExecIO {
  onStdout?: (b: Uint8Array) => void;
  onStderr?: (b: Uint8Array) => void;
}

/** A running command in a world (the ctl connection that carries it). */
export class WorldProcess {
  readonly started: Promise<number>;
  readonly exited: Promise<CtlExit>;
  /** Issue 15 (EGRESS): the command's egress through the gateway, once it exited (isolated network only). */
  egress?: Promise<EgressSummary>;
  private sock: Socket;

  constructor(ctlPath: string, req: CtlExecRequest, io: ExecIO, onWorldLost: () => void = () => {}) {
    this.sock = createConnection(ctlPath);
    this.sock.setNoDelay?.(true);
    let resolveStarted!: (pid: number) => void;
    let rejectStarted!: (e: Error) => void;
    this.started = new Promise((a, b) => {
      resolveStarted = a;
      rejectStarted = b;
    });
    this.started.catch(() => {});
    this.exited = new Promise<CtlExit>((resolve, reject) => {
      let done = false;
      const fail = (e: Error) => {
        if (done) return;
        done = true;
        // The world is gone (died under a command, or its spawner no longer answers).
        if (e instanceof WorldLostError || /ECONNREFUSED|ENOENT/.test(e.message)) onWorldLost();
        rejectStarted(e);
        reject(e);
      };
      const dec = new FrameDecoder((type, payload) => {
        switch (type) {
          case Frame.STARTED:
            resolveStarted((JSON.parse(payload.toString()) as { pid: number }).pid);
            break;
          case Frame.STDOUT:
            io.onStdout?.(payload);
            break;
          case Frame.STDERR:
            io.onStderr?.(payload);
            break;
          case Frame.EXIT:
            done = true;
            this.finished = true;
            resolve(JSON.parse(payload.toString()) as CtlExit);
            // Our side is done too: the spawner (half-open) closes the connection after this.
            this.sock.end();
            break;
          case Frame.ERROR: {
            const e = JSON.parse(payload.toString()) as { code: string; message: string };
            fail(Object.assign(new Error(e.message), { code: e.code }));
            break;
          }
        }
      });
      this.sock.on("data", (c: Buffer) => dec.push(c));
      let running = false;
      void this.started.then(() => (running = true), () => {});
      // Before STARTED it's a start failure; after, the world (its spawner) died under us.
      // Issue 18 faults (RELIABILITY): a world killed between the session lookup and the
      // command's start refuses or resets the connection: lost (503, the next gets a fresh
      // world), not a start failure (500).
      this.sock.on("error", (e) =>
        fail(
          running
            ? new WorldLostError(`the world ended while the command ran (${e.message})`)
            : /ECONNREFUSED|ECONNRESET|ENOENT|EPIPE/.test(e.message)
              ? new WorldLostError(`the world ended before the command started (${e.message})`)
              : new WorldStartError(`world control socket: ${e.message}`),
        ),
      );
      this.sock.on("close", () => fail(new WorldLostError("the world ended while the command ran")));
    });
    this.exited.catch(() => {});
    this.sock.write(encodeFrame(Frame.REQUEST, JSON.stringify(req)));
  }

  /** Set once EXIT arrived: later frames have no command to reach and are dropped. */
  private finished = false;
  private send(frame: Buffer): void {
    if (!this.finished && !this.sock.destroyed) this.sock.write(frame);
  }

  write(data: Uint8Array | string): void {
    this.send(encodeFrame(Frame.STDIN, typeof data === "string" ? Buffer.from(data) : data));
  }
  end(): void {
    this.send(encodeFrame(Frame.STDIN_EOF));
  }
  resize(cols: number, rows: number): void {
    this.send(encodeFrame(Frame.RESIZE, JSON.stringify({ cols, rows })));
  }
  signal(signal: NodeJS.Signals): void {
    this.send(encodeFrame(Frame.SIGNAL, JSON.stringify({ signal })));
  }
  /** Drop the connection: the spawner kills the command's process group. */
  kill(): void {
    this.sock.destroy();
  }
  /** Issue 18.4 (DEPLOY, agent/flow.ts): stop reading the command's output (its client lags); the spawner then stops reading the command's pipe. */
  pause(): void {
    this.sock.pause();
  }
  resume(): void {
    this.sock.resume();
  }
}

export class World {
  readonly createdAt = Date.now();
  /** Executes served (the first one included). */
  execs = 0;
  private lifeline?: Socket;
  private closed?: Promise<void>;
  hardening: unknown = null;
  /** Issue 13/14.2: the caller and agent this world belongs to (manager.ts); unset = the agent's own. */
  owner?: import("./manager.ts").WorldOwner;
  /** Layers that degraded for this world (one line each), e.g. no cgroup backend. */
  readonly warnings: string[] = [];
  private confinement?: WorldConfinement;
  /** Issue 15 (EGRESS): the world's gateway + helper (agent/egress/world.ts). */
  egress?: WorldEgress;

  private constructor(
    readonly id: string,
    readonly spec: WorldSpec,
    readonly dir: string,
    readonly ctl: string,
    readonly proc: ReturnType<typeof Bun.spawn>,
    readonly isolated: boolean,
  ) {}

  /** Host PID of the `unshare` process: it sits in the world's net/mount/uts/ipc namespaces. */
  get nsPid(): number {
    return this.proc.pid;
  }

  static async create(o: WorldOptions): Promise<World> {
    const id = o.id ?? newWorldId();
    const dir = join(o.stateDir, "worlds", id);
    const root = join(dir, "root");
    const ctl = join(dir, "ctl.sock");
    mkdirSync(root, { recursive: true, mode: 0o700 });
    let resolvConf: string | undefined;
    if (o.spec.isolate_network) {
      // DNS is pinned to the world's own stub resolver (network.ts starts it).
      resolvConf = prepareResolvConf(dir);
    }
    // Host side of resources and privileges: the world's cgroup (entered by the very first
    // process through argvPrefix) and, when asked, a user namespace.
    const confinement = await confineWorld({
      worldId: id,
      limits: withOwnHeadroom(worldLimits(o.spec.limits)), // FSVIEW (18.7): defaults in limits.ts
      // Issue 18.3 (DEPLOY): commands get their own cgroup with the caller's limits.
      commandLimits: o.spec.limits,
      ...(o.caller ? { caller: { uid: o.caller.uid, gid: o.caller.gid } } : {}),
      projectDir: o.spec.project_dir,
      // Issue 13: a root agent's worlds need no user namespace any more — commands run as the
      // caller's own uid on the host (spawner.ts drops to it), and only a uid-0 caller is root.
      userns: false,
      helperDir: join(dir, "idmap"),
    });
    const boot: WorldBootConfig = {
      id,
      hostname: `substrate-${id.slice(-8)}`,
      root,
      ctl,
      project: o.spec.project_dir,
      projectReadOnly: o.spec.fs_mode === "read_only",
      fullHost: o.spec.fs_isolation === "full",
      resolvConf,
      overlay: o.overlay,
      harden: o.harden,
      caller: o.caller,
      // the state dir always: it holds every world's control socket
      hide: [...new Set([o.stateDir, ...(o.hide ?? [])])],
      reexec: reexecOf(o.selfArgv),
      ...(confinement.commandCgroup ? { commandCgroup: confinement.commandCgroup } : {}), // issue 18.3 (DEPLOY)
      loopbackUp: o.spec.isolate_network && process.getuid?.() !== 0,
      fsView: o.spec.fs_view, // FSVIEW (issue 13): the policy's fs view
    };
    if (confinement.userns) {
      // World root is an unprivileged host user: it must reach its own world dir (0700) to
      // mount the root there and bind its control socket.
      for (const d of [dir, root]) chownSync(d, confinement.userns.rootUid, confinement.userns.rootGid);
      // ...and traverse (not list) the worlds dir and the state dir above it.
      for (const d of [join(o.stateDir, "worlds"), o.stateDir]) if ((statSync(d).mode & 0o001) === 0) chmodSync(d, (statSync(d).mode & 0o777) | 0o711);
    }
    const rootless = process.getuid?.() !== 0 && confinement.unshareArgs.length === 0;
    // policy world.root_inside (rootless only): uid 0 of the namespace, no switch to the user.
    if (rootless && o.spec.root_inside) boot.caller = undefined;
    // Issue 15 (EGRESS): a rootless world's spawner sets up its own lo-only egress netns (only
    // it holds the user namespace's capabilities); a root agent does it from outside (egress/world.ts).
    if (rootless && o.spec.isolate_network) boot.egressNet = egressNetBoot();
    const argv = [
      ...confinement.argvPrefix,
      "unshare",
      ...confinement.unshareArgs,
      // Issue 10 (rootless mode, src/lifecycle/rootless.ts): an unprivileged agent can only
      // create the other namespaces inside a user namespace of its own, where it is root.
      // Issue 13: uid N inside = N outside (bwrap's default), not root: map only the user, and
      // keep the namespace's capabilities across exec (ambient) so the spawner can build the
      // root; it drops them all before the first command.
      ...(rootless ? (o.spec.root_inside ? ["--user", "--map-root-user"] : ["--user", "--map-current-user", "--keep-caps"]) : []),
      "--mount",
      "--cgroup", // FSVIEW (issue 13): /sys/fs/cgroup in the world shows its own cgroup as the root
      "--uts",
      "--ipc",
      "--pid",
      ...(o.spec.isolate_network ? ["--net"] : []),
      "--fork",
      "--kill-child",
      "--propagation",
      "private",
      "--",
      "/bin/bash",
      "-c",
      // PID 1 of the world: run the spawner, reap whatever gets orphaned, exit with it.
      '"$@" & wait $!',
      "substrate-init",
      ...o.selfArgv,
      "__world",
      JSON.stringify(boot),
    ];
    const proc = Bun.spawn(argv, {
      // Never the agent's own cwd: when that dir is deleted (an agent started from a temp
      // project), Bun refuses to start at all ("The current working directory was deleted").
      cwd: "/",
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { PATH: confinement.env.PATH ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", SUBSTRATE_WORLD_SPAWNER: "1" },
    });
    const world = new World(id, o.spec, dir, ctl, proc, o.overlay !== undefined);
    world.confinement = confinement;
    world.warnings.push(...confinement.warnings);
    try {
      world.hardening = await world.waitReady();
      world.lifeline = await world.openLifeline();
      if (o.spec.isolate_network) {
        // Issue 15 (EGRESS): lo-only netns + nft backstop + this world's gateway socket + its
        // in-world helper (DNS stub, proxy, transparent listener), ready before any command.
        try {
          const up = o.network?.upstreamDns;
          world.egress = await setupWorldEgress({
            worldId: id,
            nsPid: world.nsPid,
            stateDir: o.stateDir,
            selfArgv: o.selfArgv,
            policy: egressPolicyOf(o.spec),
            ...(up ? { upstream: { host: up.split(":")[0]!, port: Number(up.split(":")[1] ?? 53) } } : {}),
            log: o.log,
          });
        } catch (e) {
          // Fail closed: the world keeps its own netns with nothing but loopback.
          if (!(e instanceof EgressPrereqError)) throw e;
          world.warnings.push(`network: ${(e as Error).message}; the world has loopback only (no egress)`);
        }
      }
      for (const w of world.warnings) o.log?.(`[${id}] ${w}`);
    } catch (e) {
      await world.destroy();
      throw e;
    }
    // Keep draining the spawner's stderr so it can never block on a full pipe.
    void (async () => {
      for await (const chunk of proc.stderr as ReadableStream<Uint8Array>) {
        o.log?.(`[${id}] ${new TextDecoder().decode(chunk).trimEnd()}`);
      }
    })().catch(() => {});
    return world;
  }

  /** Reads the spawner's stdout until `ready {...}`; fails with its stderr if it dies. */
  private async waitReady(): Promise<unknown> {
    const reader = (this.proc.stdout as ReadableStream<Uint8Array>).getReader();
    let text = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
      const line = text.split("\n").find((l) => l.startsWith("ready"));
      if (line) {
        reader.releaseLock();
        // Drain the rest so the spawner never blocks on stdout.
        void (async () => {
          for await (const _ of this.proc.stdout as ReadableStream<Uint8Array>);
        })().catch(() => {});
        return (JSON.parse(line.slice(6) || "{}") as { harden?: unknown }).harden ?? null;
      }
    }
    await this.proc.exited;
    const err = (await new Response(this.proc.stderr as ReadableStream).text()).trim();
    throw new WorldStartError(`world ${this.id} failed to start: ${err || `exit ${this.proc.exitCode}`}`);
  }

  private openLifeline(): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const s = createConnection(this.ctl, () => {
        s.write(encodeFrame(Frame.LIFELINE));
        resolve(s);
      });
      s.once("error", reject);
    });
  }

  /**
   * The world's mount points as its spawner sees them ("/usr ro", "/proj rw"): read from
   * /proc/<spawner>/mountinfo on the host (the spawner is the child of PID 1, itself the
   * child of our unshare). Empty when the world is gone.
   */
  mounts(): string[] {
    try {
      const kids = (p: number) => readFileSync(`/proc/${p}/task/${p}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
      const spawner = kids(kids(this.nsPid)[0]!)[0];
      if (spawner === undefined) return [];
      return readFileSync(`/proc/${spawner}/mountinfo`, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => {
          const f = l.split(" ");
          return `${f[4]} ${f[5]?.split(",")[0] === "ro" ? "ro" : "rw"}`;
        });
    } catch {
      return [];
    }
  }

  /** Issue 15 (EGRESS): bytes through the world's gateway, both directions; null without an own network. */
  egressBytes(): number | null {
    return this.egress ? this.egress.bytes() : null;
  }

  /** Issue 15 (EGRESS): live policy: the next connection and DNS answer follow this spec's allowlist and budget. */
  setEgressPolicy(spec: WorldSpec): void {
    this.egress?.setPolicy(egressPolicyOf(spec));
  }

  /** Alive and reachable: the spawner runs and its control socket is still there. */
  healthy(): boolean {
    return !this.lost && this.proc.exitCode === null && this.closed === undefined && existsSync(this.ctl);
  }
  private lost = false;

  /** Start a command; the returned process streams output through `io`. */
  spawn(req: CtlExecRequest, io: ExecIO = {}): WorldProcess {
    this.execs++;
    // Issue 15 (EGRESS): proxy env + this command's own egress accounting (egress/world.ts).
    const eg = this.egress?.prepare(req);
    const p = new WorldProcess(this.ctl, eg ? eg.req : req, io, () => (this.lost = true));
    if (eg) p.egress = eg.track(p.started, p.exited);
    return p;
  }

  /**
   * Stop the world's processes; idempotent. Closing the lifeline makes the spawner exit, PID 1
   * exits with it and the kernel kills the rest of the PID namespace; once `unshare` is reaped
   * nothing of the world runs or writes any more (its mounts went with its mount namespace).
   * Isolated executes read the upper dir right after this (issue 3, pool: agent/world/spares.ts);
   * the host-side leftovers (egress gateway socket + helper, cgroup, dirs) are `destroy()`'s job.
   */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.lifeline?.destroy();
      const exited = this.proc.exited.then(() => true);
      const inTime = await Promise.race([exited, Bun.sleep(3000).then(() => false)]);
      if (!inTime) {
        // --kill-child turns our SIGKILL of unshare into a SIGKILL of the world's PID 1.
        this.proc.kill("SIGTERM");
        await Promise.race([exited, Bun.sleep(2000)]);
        this.proc.kill("SIGKILL");
        await this.proc.exited;
      }
    })();
    return this.stopped;
  }
  private stopped?: Promise<void>;

  /** Tear the world down; idempotent: stop(), then the host-side network, cgroup and dirs. */
  destroy(): Promise<void> {
    this.closed ??= (async () => {
      // The processes go first (stop), then the egress gateway and helper: the world's netns
      // (lo + its nft table) dies with its processes anyway, and teardown tolerates what is already gone (a world
      // that exits on its own is torn down the same way, see manager.ts).
      await this.stop();
      await this.egress?.close().catch(() => {}); // issue 15: gateway socket + helper
      await this.confinement?.destroy();
      removePlaceholders(this.dir); // FSVIEW: empty placeholder dirs for protected names go
      rmSync(this.dir, { recursive: true, force: true });
    })();
    return this.closed;
  }
}
