/**
 * Host → guest transport for the Lima world: which way /run/substrate.sock reaches this
 * process. Tried in this order (the spec's VSock → SSH UDS → TCP, plus Lima's own socket
 * forward first because it costs nothing when present):
 *
 * 1. lima-native: the profile asks Lima to forward the guest socket to
 *    `<instance dir>/sock/substrate.sock`. When that file answers /v1/capabilities it is
 *    used as is: no SSH of ours at all.
 * 2. vsock: Lima ships no vsock-proxy; nothing to try (doctor reports `vsock_proxy`).
 * 3. ssh-uds: ssh2 in process, `~/.substrate/sock/agent.sock` (dir 0700) → guest socket.
 * 4. ssh-tcp: ssh2 in process, 127.0.0.1:17788 (SUBSTRATE_WORLD_PORT) → guest socket, for
 *    when a Unix socket cannot be bound (e.g. a path over macOS's 104-byte limit).
 *
 * Choices and fallbacks are logged at debug level (SUBSTRATE_DEBUG=1); the user sees one
 * warning line when a fallback was needed.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { LimaInstance } from "../contract/index.ts";
import { AgentClient, AgentUnreachable } from "../api/client.ts";
import { substrateHome } from "../config.ts";
import { readSshConfig } from "./ssh-config.ts";
import { forwardTcp, forwardUnixSocket, sshConnect, type Forward } from "./ssh2-forward.ts";

export const GUEST_SOCKET = "/run/substrate.sock";
export const DEFAULT_TCP_PORT = 17788;
export type TransportKind = "lima-native" | "ssh-uds" | "ssh-tcp";

/** The /v1 client over TCP (same API, `fetch` without the `unix` option). */
export class TcpAgentClient extends AgentClient {
  constructor(
    readonly host: string,
    readonly port: number,
  ) {
    super(`${host}:${port}`);
  }
  override async request(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<Response> {
    try {
      return await fetch(`http://${this.host}:${this.port}${path}`, {
        method,
        headers: body !== undefined ? { "content-type": "application/json" } : {},
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined,
      });
    } catch (e) {
      throw new AgentUnreachable(`${this.host}:${this.port}`, (e as Error).message);
    }
  }
}

export interface WorldTransport {
  kind: TransportKind;
  /** Socket path or host:port the client talks to. */
  address: string;
  client: AgentClient;
  /** What failed before this one was chosen (empty: first choice). */
  fallbacks: string[];
  close(): void;
}

export class TransportUnavailable extends Error {
  override name = "TransportUnavailable";
  constructor(readonly attempts: string[]) {
    super(`no transport reached the world agent in the VM: ${attempts.join("; ")}`);
  }
}

export interface TransportOptions {
  env?: NodeJS.ProcessEnv;
  debug?: (msg: string) => void;
  warn?: (msg: string) => void;
  /** Skip lima-native (tests of the ssh2 path; Lima versions that do not forward). */
  skip?: TransportKind[];
}

const defaultDebug = (env: NodeJS.ProcessEnv) => (msg: string) => {
  if (env.SUBSTRATE_DEBUG) process.stderr.write(`substrate: debug: transport: ${msg}\n`);
};

async function answers(client: AgentClient, timeoutMs: number): Promise<string | null> {
  try {
    await client.capabilities(timeoutMs);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

export async function connectLimaTransport(inst: LimaInstance, o: TransportOptions = {}): Promise<WorldTransport> {
  const env = o.env ?? process.env;
  const debug = o.debug ?? defaultDebug(env);
  const warn = o.warn ?? ((m: string) => process.stderr.write(`substrate: warning: ${m}\n`));
  const skip = new Set([...(o.skip ?? []), ...((env.SUBSTRATE_TRANSPORT_SKIP ?? "").split(",").filter(Boolean) as TransportKind[])]);
  const failures: string[] = [];
  const done = (t: Omit<WorldTransport, "fallbacks">): WorldTransport => {
    debug(`using ${t.kind} at ${t.address}${failures.length ? ` after: ${failures.join("; ")}` : ""}`);
    if (failures.length) warn(`world transport: using ${t.kind} (${failures.join("; ")})`);
    return { ...t, fallbacks: [...failures] };
  };

  // 1. Lima's own guestSocket → hostSocket forward.
  const native = join(inst.dir, "sock", "substrate.sock");
  if (skip.has("lima-native")) debug("lima-native skipped");
  else if (!existsSync(native)) debug(`lima-native: ${native} absent (no portForwards, or Lima's forward was never set up)`);
  else {
    const client = new AgentClient(native);
    const err = await answers(client, 3000);
    if (err === null) return done({ kind: "lima-native", address: native, client, close() {} });
    // [LIMA helper, issue 19] Lima's forward lives on its SSH master and dies with it (host
    // sleep, `shell --reconnect`; Lima never re-creates it): a refusing socket is expected, so
    // it is repaired quietly (src/lima/forward.ts) and, failing that, a debug line, not a warning.
    if (/ECONNREFUSED|refused/i.test(err)) {
      const { repairNativeForward } = await import("../lima/forward.ts");
      if ((await repairNativeForward(inst, { env, debug })) && (await answers(client, 3000)) === null) {
        debug(`lima-native ${native}: forward was dead, re-registered`);
        return done({ kind: "lima-native", address: native, client, close() {} });
      }
      debug(`lima-native ${native}: ${err} (Lima's forward is dead; \`substrate world warm\` re-registers it)`);
    } else failures.push(`lima-native ${native}: ${err}`);
  }
  debug("vsock: Lima provides no vsock-proxy; not tried");

  // 3 + 4 share one SSH connection setup.
  if (skip.has("ssh-uds") && skip.has("ssh-tcp")) throw new TransportUnavailable(failures);
  if (!inst.sshConfigFile) throw new TransportUnavailable([...failures, "limactl list gave no sshConfigFile"]);
  let ep;
  try {
    ep = readSshConfig(inst.sshConfigFile);
  } catch (e) {
    throw new TransportUnavailable([...failures, (e as Error).message]);
  }

  if (!skip.has("ssh-uds")) {
    const dir = join(substrateHome(env), "sock");
    for (const path of [join(dir, "agent.sock"), join(dir, `agent-${process.pid}.sock`)]) {
      let fwd: Forward | null = null;
      let ssh: Awaited<ReturnType<typeof sshConnect>> | null = null;
      try {
        ssh = await sshConnect(ep);
        fwd = await forwardUnixSocket(ssh, GUEST_SOCKET, path);
        const client = new AgentClient(path);
        const err = await answers(client, 10_000);
        if (err === null) return done({ kind: "ssh-uds", address: path, client, close: fwd.close });
        fwd.close();
        failures.push(`ssh-uds ${path}: ${err}`);
        break; // the forward worked but the agent did not answer: TCP will not do better
      } catch (e) {
        if (fwd) fwd.close();
        else ssh?.end();
        const msg = (e as Error).message;
        debug(`ssh-uds ${path}: ${msg}`);
        if (/in use by another process/.test(msg)) continue; // another substrate owns it: use our own name
        failures.push(`ssh-uds ${path}: ${msg}`);
        break;
      }
    }
  }

  if (!skip.has("ssh-tcp")) {
    const want = Number(env.SUBSTRATE_WORLD_PORT) || DEFAULT_TCP_PORT;
    for (const port of [want, 0]) {
      let fwd: Forward | null = null;
      let ssh: Awaited<ReturnType<typeof sshConnect>> | null = null;
      try {
        ssh = await sshConnect(ep);
        fwd = await forwardTcp(ssh, GUEST_SOCKET, port);
        const client = new TcpAgentClient("127.0.0.1", fwd.port!);
        const err = await answers(client, 10_000);
        if (err === null) return done({ kind: "ssh-tcp", address: fwd.address, client, close: fwd.close });
        fwd.close();
        failures.push(`ssh-tcp ${fwd.address}: ${err}`);
        break;
      } catch (e) {
        if (fwd) fwd.close();
        else ssh?.end();
        const msg = (e as Error).message;
        if (port !== 0 && /EADDRINUSE|in use/i.test(msg)) {
          debug(`ssh-tcp 127.0.0.1:${port} busy; using an ephemeral port`);
          continue;
        }
        failures.push(`ssh-tcp: ${msg}`);
        break;
      }
    }
  }
  throw new TransportUnavailable(failures);
}
