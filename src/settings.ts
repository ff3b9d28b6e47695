/**
 * Settings: every SUBSTRATE_* environment variable the product reads, in ONE table (name,
 * who reads it, kind, default, meaning), and the one resolution of `~/.substrate` and the
 * files under it. docs/CONFIG.md's environment table is rendered from ENV_SETTINGS and a
 * unit test keeps the two equal (tests/unit/settings.test.ts), and another test fails when
 * the source reads a SUBSTRATE_* name that is not in the table.
 *
 * A plain table on purpose (no zod): `readSettings` is on the `substrate -c` hot path.
 * `settings()` reads process.env once per process; modules take a `Settings` (or an env to
 * read one from) instead of reading process.env themselves.
 */
import { homedir } from "node:os";
import { join } from "node:path";

export type SettingKind = "string" | "path" | "int" | "bool" | "enum";
/** Who reads a variable: the host CLI/proxy, the world agent, both, or a command inside a world. */
export type SettingSide = "host" | "agent" | "both" | "world" | "test";

export interface EnvSetting {
  name: string;
  side: SettingSide;
  kind: SettingKind;
  /** the default as documented (null: unset / computed) */
  default: string | null;
  describe: string;
}

const S = (name: string, side: SettingSide, kind: SettingKind, def: string | null, describe: string): EnvSetting => ({ name, side, kind, default: def, describe });

/** Every SUBSTRATE_* name the product reads or sets (the build-time `SUBSTRATE_*__` defines excepted). */
export const ENV_SETTINGS: readonly EnvSetting[] = [
  S("SUBSTRATE_HOME", "both", "path", "~/.substrate", "moves `~/.substrate` (config, policies, approvals, trace, shims, rootless agent)"),
  S("SUBSTRATE_WORLD", "host", "enum", null, "`disabled` (`0`, `off`) runs commands on the host; `enabled` (`1`, `on`) forces the world; set to `enabled` inside worlds"),
  S("SUBSTRATE_WORLD_SOCKET", "host", "path", null, "the agent socket to use (default: `/run/substrate.sock` for root or when a system agent's socket exists, else the rootless `~/.substrate/run/substrate.sock`)"),
  S("SUBSTRATE_WORLD_AGENT_BIN", "host", "path", null, "agent binary to start instead of the embedded one"),
  S("SUBSTRATE_TRACE", "both", "path", "~/.substrate/trace.jsonl", "the trace file (default under `SUBSTRATE_HOME`)"),
  S("SUBSTRATE_TRACE_MAX_BYTES", "both", "int", "104857600", "rotate the trace at this size"),
  S("SUBSTRATE_TRACE_KEEP", "both", "int", "5", "rotated trace files kept"),
  S("SUBSTRATE_TRACE_FSYNC", "both", "bool", "0", "`1`: fdatasync every trace line"),
  S("SUBSTRATE_SESSION_ID", "world", "string", null, "the trace session of the enclosing substrate shell or command (read only by src/trace/span.ts)"),
  S("SUBSTRATE_SPAN_ID", "world", "string", null, "the span of the enclosing command: nested commands name it as `parent_span` (read only by src/trace/span.ts)"),
  S("SUBSTRATE_PARENT_SPAN", "world", "string", null, "never set; excluded from the replay env hash like SUBSTRATE_SPAN_ID"),
  S("SUBSTRATE_AGENT_ID", "both", "string", "human", "the calling agent's id on requests and spans; set inside worlds"),
  S("SUBSTRATE_WORLD_ID", "world", "string", null, "set inside a world: its `wld_…` id"),
  S("SUBSTRATE_SCOPE_FD", "world", "int", null, "set inside a world: the fd of the command's sealed scope-token memfd"),
  S("SUBSTRATE_SHIM_DEPTH", "world", "int", "0", "shim recursion guard (set by the shims themselves)"),
  S("SUBSTRATE_DEBUG", "both", "bool", null, "print stack traces for internal errors and debug lines"),
  S("SUBSTRATE_TIMING", "both", "bool", null, "`1`: the pipeline (and the fast path) prints its hot-path phase marks to stderr; in the agent's env, the agent and its policy helpers print theirs (bench/hotpath.ts)"),
  S("SUBSTRATE_STATE_DIR", "agent", "path", "/run/substrate", "agent: where worlds keep runtime files"),
  S("SUBSTRATE_OVERLAY_DIR", "agent", "path", "/var/lib/substrate/overlay", "agent: isolated worlds' upper/work dirs (rootless: `~/.substrate/run/overlay`)"),
  S("SUBSTRATE_RESULT_TTL_SECS", "agent", "int", "604800", "agent: isolated results nobody applied or discarded are dropped after this"),
  S("SUBSTRATE_SPARE_TTL_SECS", "agent", "int", "60", "agent: warm spare isolated worlds live this long; `0` = no pool"),
  S("SUBSTRATE_WORLD_IDLE_SECS", "agent", "int", "900", "agent: a session world with no command for this long is retired; `0` = never"),
  S("SUBSTRATE_STREAM_DETACH_TTL_MS", "agent", "int", "600000", "agent: a detached stream session is killed after this"),
  S("SUBSTRATE_WORLD_USERNS", "agent", "bool", null, "agent: `0` = a root agent builds worlds without a user namespace"),
  S("SUBSTRATE_WORLD_SPAWNER", "agent", "bool", null, "internal: marks the in-world spawner process"),
  S("SUBSTRATE_EGRESS_TIMING", "agent", "bool", null, "agent: `1` = each world's egress helper prints its setup phases to its stderr (the agent log)"),
  S("SUBSTRATE_WORLD_DNS_UPSTREAM", "agent", "string", null, "agent: the resolver the egress gateway asks (`ip` or `ip:port`; default the host's own resolver, getaddrinfo)"),
  S("SUBSTRATE_WORLD_NET_POOL", "agent", "string", "10.201.0.0/16", "agent: the address pool world networks are carved from"),
  S("SUBSTRATE_NET_STATE_DIR", "agent", "path", "/run/substrate-net", "agent: world network bookkeeping"),
  S("SUBSTRATE_NETNS_GC_INTERVAL_SECS", "agent", "int", "600", "agent: seconds between GC sweeps (gateway socket dirs of dead worlds; world TTL); `0` = no timer"),
  S("SUBSTRATE_NETNS_GC_TTL_SECS", "agent", "int", "0", "agent: maximum world age; `0` = off"),
  S("SUBSTRATE_EGRESS_KERNEL_RELAY", "agent", "bool", null, "agent: `0` = relay every handed-over egress connection in Bun (splice.ts) instead of the kernel splice(2) relay"),
  S("SUBSTRATE_EGRESS_HELPER", "agent", "bool", null, "internal: marks the egress helper process"),
  S("SUBSTRATE_EGRESS_DECISION", "agent", "string", null, "internal: the egress helper's decision line prefix"),
  S("SUBSTRATE_BODY_DEADLINE_MS", "both", "int", "30000", "API servers: a request body must arrive within this"),
  S("SUBSTRATE_HEADER_DEADLINE_MS", "both", "int", null, "API servers: request headers must arrive within this"),
  S("SUBSTRATE_PROXY_RATE", "host", "int", "200", "proxy: sustained requests per second per agent"),
  S("SUBSTRATE_WORLD_PORT", "host", "int", "17788", "macOS: the loopback port of the ssh-tcp transport to the VM's agent"),
  S("SUBSTRATE_TRANSPORT_SKIP", "host", "string", null, "macOS: comma-separated transports not to try (diagnostics)"),
  S("SUBSTRATE_PROJECT", "host", "path", null, "Lima profile template: the project mount"),
  S("SUBSTRATE_VERIFY_CONNECT", "world", "bool", null, "internal: `world verify`'s probe expects an isolated network"),
  S("SUBSTRATE_VERIFY_HOST_NETNS", "world", "string", null, "internal: `world verify` passes the host's netns inode to its probe"),
  S("SUBSTRATE_DOCTOR_PLATFORM", "test", "enum", null, "test hook: the doctor takes this platform's path (`macos`, `linux`, `windows`)"),
  S("SUBSTRATE_TEST_LIMA_BACKEND", "test", "bool", null, "test hook: `1` runs the macOS (Lima) code path on Linux against the limactl emulator"),
];

type Env = Record<string, string | undefined>;

/** Everything under `~/.substrate`, resolved one way (SUBSTRATE_HOME, else $HOME/.substrate). */
export interface SubstratePaths {
  home: string;
  config: string;
  trace: string;
  policies: string;
  approvals: string;
  shims: string;
  /** rootless agent: socket, pid file, log, state */
  runDir: string;
  rootlessSocket: string;
  bin: string;
}

export interface Settings {
  env: Env;
  paths: SubstratePaths;
  /** SUBSTRATE_WORLD: true/false when set to a known value, else undefined */
  world: boolean | undefined;
  /** SUBSTRATE_WORLD_SOCKET */
  socket: string | undefined;
  agentId: string;
  debug: boolean;
  /** macOS code path (darwin, or the test switch) */
  lima: boolean;
}

/** `~/.substrate`: SUBSTRATE_HOME, else `<home>/.substrate` (home: explicit, $HOME, the passwd home). */
export const substrateHomeOf = (env: Env, home?: string): string => env.SUBSTRATE_HOME || join(home ?? (env.HOME || homedir()), ".substrate");

export function pathsOf(env: Env, home?: string): SubstratePaths {
  const h = substrateHomeOf(env, home);
  const runDir = join(h, "run");
  return {
    home: h,
    config: join(h, "config.toml"),
    trace: env.SUBSTRATE_TRACE || join(h, "trace.jsonl"),
    policies: join(h, "policies"),
    approvals: join(h, "approvals.json"),
    shims: join(h, "shims"),
    runDir,
    rootlessSocket: join(runDir, "substrate.sock"),
    bin: join(h, "bin"),
  };
}

const WORLD_OFF = new Set(["disabled", "0", "off"]);
const WORLD_ON = new Set(["enabled", "1", "on"]);

export function readSettings(env: Env = process.env, home?: string): Settings {
  const w = env.SUBSTRATE_WORLD?.toLowerCase();
  return {
    env,
    paths: pathsOf(env, home),
    world: w === undefined ? undefined : WORLD_OFF.has(w) ? false : WORLD_ON.has(w) ? true : undefined,
    socket: env.SUBSTRATE_WORLD_SOCKET || undefined,
    agentId: env.SUBSTRATE_AGENT_ID || "human",
    debug: Boolean(env.SUBSTRATE_DEBUG),
    lima: process.platform === "darwin" || env.SUBSTRATE_TEST_LIMA_BACKEND === "1",
  };
}

let processSettings: Settings | undefined;
/** This process's settings, read from process.env once. */
export const settings = (): Settings => (processSettings ??= readSettings(process.env));

/** docs/CONFIG.md's environment table (the test compares it with the file). */
export function renderEnvTable(): string {
  const rows = ENV_SETTINGS.map((s) => `| \`${s.name}\` | ${s.side} | ${s.default === null ? "—" : `\`${s.default}\``} | ${s.describe} |`);
  return ["| variable | read by | default | meaning |", "|---|---|---|---|", ...rows].join("\n");
}
