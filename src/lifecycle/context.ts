/**
 * What every Linux lifecycle mode needs to know: which agent binary is wanted (and its
 * version), the socket's ownership, which mode applies to this user on this machine.
 */
import { createHash } from "node:crypto";
import { existsSync, lstatSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { AgentClient } from "../api/client.ts";
import { DEFAULT_SOCKET, effectiveConfig, rootlessSocketPath, substrateHome } from "../config.ts";
import { VersionInfo, type Capabilities, type LifecycleAction, type LifecycleMode, type SocketInfo } from "../contract/index.ts";
import { agentBytes, getEmbedded, sourceRoot } from "../embedded.ts";
import { systemdBooted } from "../sys/systemctl.ts";
import { versionInfo, versionString } from "../version.ts";

/** A failure the user can act on; the CLI maps it to one line + hint + exit code. */
export class LifecycleError extends Error {
  override name = "LifecycleError";
  constructor(
    readonly exitCode: 1 | 2 | 3 | 4,
    message: string,
    readonly hint: string,
  ) {
    super(message);
  }
}

// One Progress for every host backend (Linux modes and the Lima VM): src/world/progress.ts.
import type { Progress } from "../world/progress.ts";
import { isRoot } from "./paths.ts";
export { quietProgress, type Progress } from "../world/progress.ts";

export interface LifecycleContext {
  env: NodeJS.ProcessEnv;
  progress: Progress;
  /** Forced mode (`--mode`), else detected. */
  mode?: LifecycleMode;
  /** Extra writable roots for the systemd unit's sandbox (`--writable`). */
  writable?: string[];
}

export { isRoot };

/** The agent we want running: SUBSTRATE_WORLD_AGENT_BIN, the embedded one, or the checkout's. */
export interface WantedAgent {
  kind: "override" | "embedded" | "source";
  /** Path of the override binary (kind override). */
  path: string | null;
  version: VersionInfo | null;
  /** Bytes to install (override/embedded), sha256 of them. */
  bytes(): Promise<Uint8Array>;
  sha256: string | null;
}

/** `BIN --version --json` → VersionInfo, or null when it does not run or print one. */
export function binaryVersion(bin: string): VersionInfo | null {
  try {
    const r = Bun.spawnSync([bin, "--version", "--json"], { stdin: "ignore", stdout: "pipe", stderr: "ignore", timeout: 15_000 });
    if (r.exitCode !== 0) return null;
    const p = VersionInfo.safeParse(JSON.parse(r.stdout.toString().trim()));
    return p.success ? p.data : null;
  } catch {
    return null;
  }
}

export const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

export function wantedAgent(env: NodeJS.ProcessEnv = process.env): WantedAgent {
  const override = env.SUBSTRATE_WORLD_AGENT_BIN;
  if (override) {
    if (!existsSync(override))
      throw new LifecycleError(2, `SUBSTRATE_WORLD_AGENT_BIN=${override} does not exist`, "point it at a substrate-world-agent binary, or unset it to use the embedded agent");
    const bytes = new Uint8Array(readFileSync(override));
    return { kind: "override", path: override, version: binaryVersion(override), bytes: async () => bytes, sha256: sha256(bytes) };
  }
  const e = getEmbedded();
  if (e) return { kind: "embedded", path: null, version: e.agent.version, bytes: agentBytes, sha256: e.agent.sha256 };
  return {
    kind: "source",
    path: join(sourceRoot(), "agent", "main.ts"),
    version: versionInfo(),
    bytes: async () => {
      throw new LifecycleError(4, "this substrate runs from source and embeds no agent binary", "build it (`make build-native`, then use dist/substrate-linux-*), or set SUBSTRATE_WORLD_AGENT_BIN=/path/to/substrate-world-agent");
    },
    sha256: null,
  };
}

const nameOf = (file: string, id: number): string | null => {
  try {
    for (const line of readFileSync(file, "utf8").split("\n")) {
      const f = line.split(":");
      if (f[2] === String(id)) return f[0] ?? null;
    }
  } catch {}
  return null;
};

export function socketInfo(path: string): SocketInfo {
  try {
    const st = lstatSync(path);
    if (!st.isSocket()) return { path, exists: false, owner: null, group: null, mode: null };
    return {
      path,
      exists: true,
      owner: nameOf("/etc/passwd", st.uid) ?? String(st.uid),
      group: nameOf("/etc/group", st.gid) ?? String(st.gid),
      mode: `0${(st.mode & 0o777).toString(8).padStart(3, "0")}`,
    };
  } catch {
    return { path, exists: false, owner: null, group: null, mode: null };
  }
}

export async function probe(socketPath: string, timeoutMs = 3000): Promise<Capabilities | null> {
  try {
    return await new AgentClient(socketPath).capabilities(timeoutMs);
  } catch {
    return null;
  }
}

export interface Target {
  mode: LifecycleMode;
  socketPath: string;
  /** Why this mode (one line for humans). */
  why: string;
}

/**
 * Which mode and socket `warm` acts on:
 * - an explicit socket (SUBSTRATE_WORLD_SOCKET or config world.socket) is honoured: root →
 *   manual (socket activation owns only /run/substrate.sock), non-root → rootless;
 * - root + systemd PID 1 → socket_activation on /run/substrate.sock;
 * - root without systemd → manual on /run/substrate.sock;
 * - non-root → rootless on ~/.substrate/run/substrate.sock.
 */
export function resolveTarget(ctx: LifecycleContext): Target {
  const env = ctx.env;
  const cfg = effectiveConfig({ env });
  const explicit = env.SUBSTRATE_WORLD_SOCKET ?? cfg.file.world.socket ?? null;
  const root = isRoot();
  let mode: LifecycleMode;
  let why: string;
  if (ctx.mode) {
    mode = ctx.mode;
    why = `--mode ${ctx.mode}`;
  } else if (!root) {
    mode = "rootless";
    why = "not root: the agent runs as you, worlds in a user namespace";
  } else if (systemdBooted() && (explicit === null || explicit === DEFAULT_SOCKET)) {
    mode = "socket_activation";
    why = "root and systemd is PID 1";
  } else {
    mode = "manual";
    why = explicit !== null && explicit !== DEFAULT_SOCKET ? `socket ${explicit} is not the systemd one` : "root without systemd (no /run/systemd/system)";
  }
  if (mode === "socket_activation" && !root) throw new LifecycleError(4, "socket activation mode installs systemd units and needs root", "sudo substrate world warm   # or without sudo: rootless mode");
  if (mode === "manual" && !root) throw new LifecycleError(4, "manual mode runs the agent as root and needs root", "sudo substrate world warm   # or without sudo: rootless mode");
  if (mode === "socket_activation" && explicit !== null && explicit !== DEFAULT_SOCKET)
    throw new LifecycleError(2, `socket activation serves ${DEFAULT_SOCKET}, not ${explicit}`, "unset SUBSTRATE_WORLD_SOCKET (and world.socket in ~/.substrate/config.toml), or use --mode manual");
  const socketPath = explicit ?? (mode === "rootless" ? rootlessSocketPath(env) : DEFAULT_SOCKET);
  return { mode, socketPath, why };
}

/** Rootless mode's files, all under ~/.substrate/run (0700). */
export function rootlessPaths(env: NodeJS.ProcessEnv, socketPath: string = rootlessSocketPath(env)) {
  const dir = join(substrateHome(env), "run");
  return {
    dir,
    socket: socketPath,
    pidFile: socketPath === rootlessSocketPath(env) ? join(dir, "agent.pid") : `${socketPath}.pid`,
    logFile: join(dir, "agent.log"),
    stateDir: join(dir, "state"),
    /** Isolated worlds' upper/work dirs (on disk: never tmpfs), instead of /var/lib/substrate/overlay. */
    overlayDir: join(dir, "overlay"),
  };
}

export const vstr = (v: VersionInfo | null | undefined): string | null => (v ? versionString(v) : null);

/** A report's actions accumulate here as steps happen. */
export class Actions {
  readonly list: LifecycleAction[] = [];
  add(a: LifecycleAction): void {
    this.list.push(a);
  }
  has(a: LifecycleAction): boolean {
    return this.list.includes(a);
  }
  /** stop's actions then warm's (restart). */
  static concat(...all: Actions[]): Actions {
    const out = new Actions();
    for (const x of all) for (const a of x.list) out.add(a);
    return out;
  }
}
