/**
 * A world's egress, composed: the world's netns (lo only), its nft backstop, its gateway
 * socket, its in-world helper. World.create (session.ts) calls `setupWorldEgress` once the
 * world's spawner is ready and before the first command; `close()` when the world goes.
 *
 * World netns after setup (nothing else; no veth, no route out, no host table touched):
 *   lo up: 127.0.0.1/8, 198.18.0.1/32 (so glibc's AI_ADDRCONFIG sees an IPv4 address)
 *   route  local 0.0.0.0/0 dev lo table local  (every IPv4 destination is "local", so a
 *          connect() reaches the nft hook instead of failing with ENETUNREACH; the packet
 *          can only go to lo: there is no other device)
 *   nft    table inet substrate (see renderWorldTable)
 *   helper DNS 127.0.0.53:53, proxy 127.0.0.1:3128, transparent 127.0.0.1:15001
 *
 * Who applies it: root agent — the helper, from inside the netns before it reports ready
 * (rtnetlink + `nft -f`, helper.ts netSetup); rootless — the world's spawner
 * (WorldBootConfig.egressNet, netns.ts), the only process holding the user namespace's
 * capabilities.
 */
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { EgressEvent, EgressSpec, EgressSummary } from "../../src/contract/net.ts";
import { recordEgressEvent, recordEgressRateLimit } from "./trace.ts";
import { CommandEgress, upstreamFromEnv, WorldGateway, type EgressPolicy, type Upstream } from "./gateway.ts";
import type { EgressHelperConfig } from "./helper.ts";
import { DNS_ADDR, PROXY_PORT, renderWorldTable, SYNTHETIC_LO_ADDR } from "./netns.ts";

export { egressNetBoot, renderWorldTable } from "./netns.ts";

export const WORLD_RESOLV_CONF = `nameserver ${DNS_ADDR}\noptions edns0 trust-ad\n`;

/** A prerequisite is missing (a program, a kernel feature): exit code 4. */
export class EgressPrereqError extends Error {
  override name = "EgressPrereqError";
  readonly exitCode = 4;
}

/** Writes <runDir>/resolv.conf, bind-mounted over the world's /etc/resolv.conf (rootfs.ts). */
export function prepareResolvConf(runDir: string): string {
  mkdirSync(runDir, { recursive: true, mode: 0o700 });
  const p = join(runDir, "resolv.conf");
  writeFileSync(p, WORLD_RESOLV_CONF, { mode: 0o644 });
  return p;
}

/** Proxy environment for a world's commands (lower-case too: curl reads http_proxy only). */
export function proxyEnv(base: Record<string, string> = {}): Record<string, string> {
  const url = `http://127.0.0.1:${PROXY_PORT}`;
  const noProxy = "localhost,127.0.0.1,::1";
  const java = `-Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort=${PROXY_PORT} -Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=${PROXY_PORT} -Dhttp.nonProxyHosts=localhost|127.0.0.1`;
  const env: Record<string, string> = {};
  for (const k of ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "GRPC_PROXY"]) {
    env[k] = url;
    env[k.toLowerCase()] = url;
  }
  env.NO_PROXY = noProxy;
  env.no_proxy = noProxy;
  env.NODE_USE_ENV_PROXY = "1";
  env.npm_config_proxy = url;
  env.npm_config_https_proxy = url;
  env.JAVA_TOOL_OPTIONS = base.JAVA_TOOL_OPTIONS ? `${base.JAVA_TOOL_OPTIONS} ${java}` : java;
  return env;
}

/** The uid the helper drops to under a root agent (nobody), as the host sees it. */
function helperIdentity(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  let uid = 65534;
  let gid = 65534;
  try {
    const line = readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.startsWith("nobody:"));
    if (line) {
      const f = line.split(":");
      uid = Number(f[2]);
      gid = Number(f[3]);
    }
  } catch {}
  return { uid, gid };
}

export interface WorldEgressOptions {
  worldId: string;
  /** Host PID of the world's unshare (its netns, and its PID namespace's parent). */
  nsPid: number;
  /** Per-agent state dir: the gateway socket goes under `<stateDir>/egress/<worldId>/`. */
  stateDir: string;
  /** argv that runs this agent binary (the helper is `<selfArgv> __egress`). */
  selfArgv: string[];
  policy: EgressPolicy;
  /** Tests point the gateway's resolver at their own upstream; default SUBSTRATE_WORLD_DNS_UPSTREAM or the host's. */
  upstream?: Upstream;
  onEvent?: (e: EgressEvent, cmd: CommandEgress | undefined) => void;
  onRateLimit?: (cmd: CommandEgress, why: string) => void;
  log?: (m: string) => void;
  /** false: the helper relays every connection itself (two relays; bench/egress.ts's "before"). Default: socket handoff. */
  handoff?: boolean;
}

/** The world spec's part the gateway follows (live: re-applied at every execute). */
export const egressPolicyOf = (spec: { allowed_domains: readonly string[]; egress?: EgressSpec }): EgressPolicy => ({
  allowed: spec.allowed_domains,
  ...(spec.egress ? { egress: spec.egress } : {}),
});

/** A ctl exec request as far as egress cares (agent/world/ctl.ts CtlExecRequest). */
interface ExecLike {
  env: Record<string, string>;
  scope_token?: string;
}

export interface WorldEgress {
  readonly gateway: WorldGateway;
  /** Host PID of the helper (tests). */
  readonly helperPid: number;
  setPolicy(p: EgressPolicy): void;
  /** A command started: count its connections apart (its pid arrives with STARTED). */
  command(spanId: string | undefined): CommandEgress;
  endCommand(c: CommandEgress): EgressSummary;
  /**
   * For World.spawn: the request with the world's proxy env (it wins over the caller's: a
   * host proxy is unreachable from the world), and the command's accounting, ended (and
   * summarised) when the command exits.
   */
  prepare<R extends ExecLike>(req: R): { req: R; track(started: Promise<number>, exited: Promise<unknown>): Promise<EgressSummary> };
  /** Bytes through the gateway so far, both directions. */
  bytes(): number;
  close(): Promise<void>;
}

const PATHS = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" };
const HELPER_ENV = {
  ...PATHS,
  SUBSTRATE_EGRESS_HELPER: "1",
  BUN_GC_TIMER_DISABLE: "1",
  ...(process.env.SUBSTRATE_EGRESS_TIMING === "1" ? { SUBSTRATE_EGRESS_TIMING: "1" } : {}),
};

/**
 * Root agent: one helper process kept warm (started, loaded, waiting for its config on
 * stdin), so a world's creation does not wait for a Bun start (~30-100 ms): the helper joins
 * the world's netns itself (setns, helper.ts) when it gets the config. A warm helper whose
 * agent dies reads EOF and exits.
 */
let warm: { argv: string; proc: ReturnType<typeof Bun.spawn> } | undefined;
function spawnHelper(argv: string[]): ReturnType<typeof Bun.spawn> {
  const p = Bun.spawn(argv, { stdin: "pipe", stdout: "pipe", stderr: "pipe", env: HELPER_ENV });
  p.unref();
  return p;
}
function takeWarmHelper(selfArgv: string[]): ReturnType<typeof Bun.spawn> {
  const argv = [...selfArgv, "__egress"];
  const key = JSON.stringify(argv);
  const w = warm;
  warm = undefined;
  if (w && w.argv === key && w.proc.exitCode === null) return w.proc;
  w?.proc.kill("SIGKILL");
  return spawnHelper(argv);
}
/** Root agent start: load the first world's helper ahead of time (main.ts). */
export function prewarmEgressHelper(selfArgv: string[]): void {
  if (process.getuid?.() === 0) replenishWarmHelper(selfArgv);
}
/** The next world's helper starts loading once this one is ready (not on this world's path). */
function replenishWarmHelper(selfArgv: string[]): void {
  const argv = [...selfArgv, "__egress"];
  if (warm && warm.argv === JSON.stringify(argv) && warm.proc.exitCode === null) return;
  setTimeout(() => {
    if (warm && warm.proc.exitCode === null) return;
    warm = { argv: JSON.stringify(argv), proc: spawnHelper(argv) };
  }, 0).unref?.();
}

export async function setupWorldEgress(o: WorldEgressOptions): Promise<WorldEgress> {
  for (const prog of ["ip", "nft", "nsenter"]) {
    if (Bun.which(prog, { PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` }) === null) {
      throw new EgressPrereqError(`${prog} not found: run scripts/setup.sh (Debian: iproute2, nftables, util-linux)`);
    }
  }
  const rootless = process.getuid?.() !== 0;
  // Network first, before any command: no window without the backstop.
  // A rootless world's spawner did it already (WorldBootConfig.egressNet, netns.ts): only it
  // holds the capabilities of the world's user namespace (uid N inside = N outside).
  // Root agent: the helper applies it from inside the netns before it reports ready (netSetup,
  // helper.ts), i.e. before this returns and before any command runs.

  const owner = helperIdentity();
  const dir = join(o.stateDir, "egress", o.worldId);
  if (owner) {
    // The helper (nobody) must traverse to its socket dir, and no further.
    mkdirSync(join(o.stateDir, "egress"), { recursive: true, mode: 0o711 });
    for (const d of [join(o.stateDir, "egress"), o.stateDir]) if ((statSync(d).mode & 0o001) === 0) chmodSync(d, (statSync(d).mode & 0o777) | 0o711);
  }
  const gateway = new WorldGateway({
    worldId: o.worldId,
    dir,
    ...(owner ? { owner } : {}),
    policy: o.policy,
    netnsPid: o.nsPid,
    upstream: o.upstream ?? upstreamFromEnv(),
    onEvent: o.onEvent ?? recordEgressEvent,
    onRateLimit:
      o.onRateLimit ??
      ((cmd, why) =>
        recordEgressRateLimit(
          { world_id: o.worldId, name: "*", port: 0, via: "proxy", decision: "deny", reason: "rate_limit", message: why, bytes_up: cmd.bytesUp, bytes_down: cmd.bytesDown, duration_ms: 0, ...(cmd.spanId ? { command_span_id: cmd.spanId } : {}) },
          cmd,
          why,
        )),
    log: o.log,
    ...(o.handoff === false ? { handoff: false } : {}),
  });
  await gateway.listen();

  const cfg: EgressHelperConfig = {
    socket: gateway.socketPath,
    token: gateway.token,
    ...(gateway.handoffAvailable ? { fdSocket: gateway.fdSocketPath } : {}),
    ...(owner ? { dropTo: owner } : {}),
  };
  let closing = false;
  let helper: ReturnType<typeof Bun.spawn> | undefined;
  let restarts = 0;
  let firstStart = true;
  const start = async (): Promise<void> => {
    let p: ReturnType<typeof Bun.spawn>;
    if (rootless) {
      // Only nsenter can join the world's user namespace (a Bun process is multi-threaded).
      const argv = ["nsenter", `--user=/proc/${o.nsPid}/ns/user`, "--preserve-credentials", `--net=/proc/${o.nsPid}/ns/net`, "--", ...o.selfArgv, "__egress"];
      p = Bun.spawn(argv, { stdin: new TextEncoder().encode(JSON.stringify(cfg)), stdout: "pipe", stderr: "pipe", env: HELPER_ENV });
    } else {
      p = takeWarmHelper(o.selfArgv);
      const sink = p.stdin as import("bun").FileSink;
      const netSetup = firstStart ? { netSetup: { loAddr: SYNTHETIC_LO_ADDR, nft: renderWorldTable() } } : {};
      firstStart = false;
      sink.write(JSON.stringify({ ...cfg, netns: `/proc/${o.nsPid}/ns/net`, ...netSetup }));
      await sink.end();
    }
    p.ref();
    helper = p;
    let err = "";
    void (async () => {
      for await (const c of p.stderr as ReadableStream<Uint8Array>) {
        const t = new TextDecoder().decode(c);
        err = (err + t).slice(-4000);
        o.log?.(`[${o.worldId}] egress helper: ${t.trimEnd()}`);
      }
    })().catch(() => {});
    const reader = (p.stdout as ReadableStream<Uint8Array>).getReader();
    let out = "";
    const ready = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`egress helper exited before it was ready: ${err.trim() || `exit ${p.exitCode}`}`);
        out += new TextDecoder().decode(value);
        if (out.includes("ready\n")) return;
      }
    })();
    const timeout = Bun.sleep(15_000).then(() => {
      throw new Error(`egress helper not ready within 15 s: ${err.trim()}`);
    });
    try {
      await Promise.race([ready, timeout]);
    } catch (e) {
      p.kill("SIGKILL");
      throw e;
    }
    reader.releaseLock();
    if (!rootless) replenishWarmHelper(o.selfArgv);
    void (async () => {
      for await (const _ of p.stdout as ReadableStream<Uint8Array>);
    })().catch(() => {});
    // Supervised: a helper that dies is started again (the name table lives in the gateway,
    // so cached answers keep working); while it is down, egress fails closed.
    void p.exited.then((code) => {
      if (closing || helper !== p) return;
      o.log?.(`[${o.worldId}] egress helper exited (${code}); restarting`);
      if (restarts++ < 5) void start().catch((e: unknown) => o.log?.(`[${o.worldId}] egress helper restart failed: ${(e as Error).message}`));
    });
  };
  try {
    await start();
  } catch (e) {
    closing = true;
    gateway.close();
    helper?.kill("SIGKILL");
    // Fail closed but keep the world usable: loopback only, said once (session.ts).
    throw new EgressPrereqError(`egress setup failed (${(e as Error).message})`);
  }

  return {
    gateway,
    get helperPid() {
      return helper!.pid;
    },
    setPolicy: (p) => gateway.setPolicy(p),
    command: (spanId) => gateway.command(spanId),
    endCommand: (c) => gateway.endCommand(c),
    prepare: (req) => {
      // The execute's own span (its scope token carries it), else the caller's.
      let spanId: string | undefined;
      try {
        spanId = req.scope_token ? (JSON.parse(req.scope_token) as { span_id?: string }).span_id : undefined;
      } catch {}
      const cmd = gateway.command(spanId ?? req.env.SUBSTRATE_SPAN_ID);
      if (req.env.SUBSTRATE_SESSION_ID) cmd.sessionId = req.env.SUBSTRATE_SESSION_ID;
      if (req.env.SUBSTRATE_AGENT_ID) cmd.agentId = req.env.SUBSTRATE_AGENT_ID;
      const out = { ...req, env: { ...req.env, ...proxyEnv(req.env) } };
      return {
        req: out,
        track: (started, exited) => {
          started.then((pid) => (cmd.pid = pid), () => {});
          return exited.then(
            () => gateway.endCommand(cmd),
            () => gateway.endCommand(cmd),
          );
        },
      };
    },
    bytes: () => gateway.totals.bytes_up + gateway.totals.bytes_down + gateway.kernelBytes(),
    close: async () => {
      if (closing) return;
      closing = true;
      gateway.close(); // the helper's control connection closes: it exits
      const h = helper!;
      const exited = h.exited.then(() => true);
      if (!(await Promise.race([exited, Bun.sleep(2000).then(() => false)]))) {
        h.kill("SIGKILL");
        await h.exited;
      }
    },
  };
}
