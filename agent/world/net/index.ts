/**
 * A world's network: veth + /30 to the host, an nftables egress allowlist inside the world's
 * network namespace, and DNS pinned to a dnsmasq on 127.0.0.53 in that namespace.
 *
 * The lead composes it: after the world's PID exists (its /proc/PID/ns/net is the world's
 * netns, holding only a down `lo`) and before the first command runs, call
 * `setupWorldNetwork`; call `teardown()` when the world goes. `isolate_network=false` means
 * no netns and no call at all: the world shares the host's network.
 *
 * What is created, and where:
 *   host netns:  veth `sbx<8 hex>` with <pool>.1/30   (deleted at teardown; takes its peer)
 *                opt-in NAT: table `ip substrate_nat_<8 hex>` (deleted at teardown)
 *   world netns: lo up, `eth0` <pool>.2/30, default route via the host side,
 *                table `inet substrate` (goes away with the netns), dnsmasq on 127.0.0.53
 *   files:       <runDir>/resolv.conf (if we wrote it), /run/substrate-net/dns/<hex>/ (dnsmasq
 *                config + servers file), /run/substrate-net/leases/<i>.json (all removed at teardown)
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { NetLease, WorldNetworkInfo } from "../../../src/contract/net.ts";
import { dnsmasqAvailable, dnsmasqInfo, spawnDnsmasq, type DnsmasqInfo, type DnsmasqProcess } from "../../../src/sys/dnsmasq.ts";
import { ipBatch, linkDelete, linkExists } from "../../../src/sys/ip.ts";
import { isIpv4, isIpv4Cidr, nftApply, nftDeleteTable, nftSetElements } from "../../../src/sys/nft.ts";
import { renderDnsmasqConf, WORLD_RESOLV_CONF } from "./dnsmasq-conf.ts";
import {
  generationMarker,
  NetConfigError,
  parseAllowedDomains,
  renderServersFile,
  type DomainRule,
  type Upstream,
} from "./domains.ts";
import { claimSubnet, dnsDirFor, netStateDir, writeLease } from "./pool.ts";
import { AllowlistResolver } from "./resolver.ts";
import { renderSetUpdate, renderTable, TABLE_FAMILY, TABLE_NAME } from "./ruleset.ts";
import { cidrRange, intToIp } from "./ipv4.ts";

export { NetConfigError } from "./domains.ts";
export { startNetnsGc, type NetnsGc, type NetnsGcOptions, type GcReport } from "./gc.ts";

/** A prerequisite is missing (a program, a kernel feature, a sysctl): exit code 4. */
export class NetPrereqError extends Error {
  override name = "NetPrereqError";
  readonly exitCode = 4;
}

export const VETH_PREFIX = "sbx";
export const DEFAULT_PORTS = [443, 80];
export const DEFAULT_REFRESH_SECS = 60;

export interface WorldNetworkOptions {
  worldId: string;
  /** Host PID in the world's network namespace (the world's `unshare` or its PID 1). */
  pid: number;
  allowedDomains: string[];
  /** Literal IPv4 addresses or CIDRs allowed besides the resolved names. */
  allowedIps?: string[];
  /** TCP destination ports allowed to allowlisted addresses; default [443, 80]. */
  ports?: number[];
  /** "ip" or "ip:port"; default SUBSTRATE_WORLD_DNS_UPSTREAM, else the host's first non-loopback nameserver. */
  upstreamDns?: string;
  /** Upper bound between resolver passes (also bounded below by the answers' TTL); default 60. */
  refreshSecs?: number;
  /** A per-world directory we may write files in (resolv.conf, dnsmasq config). */
  runDir: string;
  /** Opt-in egress NAT to the real network; default `SUBSTRATE_WORLD_NAT=1`. Touches the host ruleset. */
  nat?: boolean;
  /** Warnings (unresolvable names, refresh failures); default stderr. */
  log?: (msg: string) => void;
  /** Run dnsmasq in the PID namespace of `pid`'s children (default true; tests of bare netns pass false). */
  joinPidns?: boolean;
}

export interface WorldNetwork {
  /** Bind-mount this over the world's /etc/resolv.conf ("nameserver 127.0.0.53"). */
  resolvConfPath: string;
  hostVeth: string;
  worldAddr: string;
  hostAddr: string;
  /** Replace any of the three; one nft transaction, dnsmasq reloaded before it returns. */
  update(opts: { allowedDomains?: string[]; allowedIps?: string[]; ports?: number[] }): Promise<void>;
  /** Re-resolve the allowed names now (the timer does it every refreshSecs / TTL). */
  refresh(): Promise<void>;
  /** Stop the timer and dnsmasq, delete the veth (and NAT table), remove our files. Idempotent. */
  teardown(): Promise<void>;
  /** A summary for capabilities/doctor (contract: WorldNetworkInfo). */
  info(): Promise<WorldNetworkInfo>;
  /** dnsmasq's host PID (tests and GC). */
  readonly dnsmasqPid: number;
}

/** `sbx` + 8 hex of sha256(worldId): ≤ 15 chars, stable, and not the time-ordered uuidv7 prefix. */
export const hostVethName = (worldId: string): string =>
  VETH_PREFIX + createHash("sha256").update(worldId).digest("hex").slice(0, 8);

/** Writes <runDir>/resolv.conf (the lead can call this before the world exists). */
export function prepareResolvConf(runDir: string): string {
  mkdirSync(runDir, { recursive: true, mode: 0o700 });
  const p = join(runDir, "resolv.conf");
  writeFileSync(p, WORLD_RESOLV_CONF, { mode: 0o644 });
  return p;
}

/** "ip" | "ip:port" → Upstream; falls back to the host's resolv.conf. */
export function resolveUpstream(explicit?: string): Upstream {
  const raw = explicit ?? process.env.SUBSTRATE_WORLD_DNS_UPSTREAM;
  if (raw !== undefined && raw !== "") {
    const [host, port, ...rest] = raw.split(":");
    const p = port === undefined ? 53 : Number(port);
    if (rest.length > 0 || host === undefined || !isIpv4(host) || !Number.isInteger(p) || p < 1 || p > 65535) {
      throw new NetConfigError(`upstream DNS ${JSON.stringify(raw)} must be an IPv4 address, optionally with :port (e.g. 1.1.1.1 or 10.0.0.2:5353)`);
    }
    return { host, port: p };
  }
  for (const f of ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"]) {
    let text = "";
    try {
      text = readFileSync(f, "utf8");
    } catch {
      continue;
    }
    for (const m of text.matchAll(/^\s*nameserver\s+(\S+)/gm)) {
      const ip = m[1]!;
      // A loopback resolver (systemd-resolved, a host dnsmasq) is unreachable from the world's netns.
      if (isIpv4(ip) && !ip.startsWith("127.")) return { host: ip, port: 53 };
    }
  }
  throw new NetConfigError(
    "no upstream DNS for the world: the host's resolv.conf has only loopback nameservers, which a world cannot reach; set SUBSTRATE_WORLD_DNS_UPSTREAM=<ip>",
  );
}

function validatePorts(ports: number[]): number[] {
  for (const p of ports) {
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw new NetConfigError(`port ${p} is not a TCP port (1-65535)`);
  }
  return [...new Set(ports)];
}

function validateIps(ips: string[]): string[] {
  for (const ip of ips) {
    if (!isIpv4Cidr(ip)) throw new NetConfigError(`allowed IP ${JSON.stringify(ip)} is not an IPv4 address or CIDR (IPv6 egress is always blocked)`);
  }
  return ips;
}

/** The uid dnsmasq runs as, as the world's netns sees it (nft `meta skuid` is read through the netns owner's user namespace). */
function dnsmasqUser(pid: number): { user: string; uid: number } {
  const passwd = readFileSync("/etc/passwd", "utf8");
  const find = (name: string): number | undefined => {
    const line = passwd.split("\n").find((l) => l.startsWith(`${name}:`));
    return line === undefined ? undefined : Number(line.split(":")[2]);
  };
  const user = find("dnsmasq") !== undefined ? "dnsmasq" : "nobody";
  const hostUid = find(user) ?? 65534;
  let uid = hostUid;
  try {
    const map = readFileSync(`/proc/${pid}/uid_map`, "utf8").trim().split("\n").map((l) => l.trim().split(/\s+/).map(Number));
    const hit = map.find(([, outside, count]) => hostUid >= outside! && hostUid < outside! + count!);
    uid = hit ? hit[0]! + (hostUid - hit[1]!) : Number(readFileSync("/proc/sys/kernel/overflowuid", "utf8"));
  } catch {
    // no user namespace information: identity
  }
  return { user, uid };
}

let dnsmasqInfoCache: Promise<DnsmasqInfo> | undefined;

/** Checks the programs and the namespace before touching anything. */
async function checkPrereqs(pid: number): Promise<DnsmasqInfo> {
  for (const prog of ["ip", "nft", "nsenter"]) {
    if (Bun.which(prog, { PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` }) === null) {
      throw new NetPrereqError(`${prog} not found: run scripts/setup.sh (Debian: iproute2, nftables, util-linux)`);
    }
  }
  if (!dnsmasqAvailable()) {
    throw new NetPrereqError(
      "dnsmasq not found: the world's DNS is pinned to a dnsmasq on 127.0.0.53; run scripts/setup.sh (Debian: dnsmasq-base) or create the world with isolate_network=false",
    );
  }
  if (!existsSync(`/proc/${pid}/ns/net`)) {
    throw new NetConfigError(`world process ${pid} does not exist (no /proc/${pid}/ns/net): create the world first`);
  }
  if (statSync(`/proc/${pid}/ns/net`).ino === statSync("/proc/self/ns/net").ino) {
    throw new NetConfigError(`process ${pid} shares the agent's network namespace: the world must be started with unshare --net`);
  }
  dnsmasqInfoCache ??= dnsmasqInfo();
  return dnsmasqInfoCache;
}

export async function setupWorldNetwork(opts: WorldNetworkOptions): Promise<WorldNetwork> {
  const log = opts.log ?? ((m: string) => console.error(`substrate net[${opts.worldId}]: ${m}`));
  let rules = parseAllowedDomains(opts.allowedDomains);
  let ips = validateIps(opts.allowedIps ?? []);
  let ports = validatePorts(opts.ports ?? DEFAULT_PORTS);
  const refreshSecs = opts.refreshSecs ?? DEFAULT_REFRESH_SECS;
  if (!(refreshSecs > 0)) throw new NetConfigError(`refreshSecs must be > 0 (got ${refreshSecs})`);
  const upstream = resolveUpstream(opts.upstreamDns);
  const nat = opts.nat ?? process.env.SUBSTRATE_WORLD_NAT === "1";
  const dm = await checkPrereqs(opts.pid);
  if (!dm.filterAaaa) log(`dnsmasq ${dm.version} lacks filter-AAAA (needs ≥ 2.87): AAAA answers pass, IPv6 egress is still rejected by nft`);
  if (!dm.nftset) log(`dnsmasq ${dm.version} lacks nftset: only the resolver task fills the allowlist (CDN address rotation may refuse connections)`);
  if (nat && readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8").trim() !== "1") {
    throw new NetPrereqError(
      "SUBSTRATE_WORLD_NAT=1 needs IPv4 forwarding on the host (return traffic is forwarded from the uplink): run `sysctl -w net.ipv4.ip_forward=1` (persist it in /etc/sysctl.d) or unset SUBSTRATE_WORLD_NAT",
    );
  }

  const hostVeth = hostVethName(opts.worldId);
  const hex = hostVeth.slice(VETH_PREFIX.length);
  mkdirSync(opts.runDir, { recursive: true, mode: 0o700 });
  const resolvConfPath = join(opts.runDir, "resolv.conf");
  // dnsmasq reads its servers file as its own unprivileged user (src/sys/dnsmasq.ts), so its
  // files live in a world-readable directory of ours, not in the (0700) runDir. They hold
  // only the allowlist.
  const dnsDir = dnsDirFor(hex);
  mkdirSync(dnsDir, { recursive: true, mode: 0o755 });
  const confPath = join(dnsDir, "dnsmasq.conf");
  const serversPath = join(dnsDir, "dnsmasq.servers");
  const files = [confPath, serversPath, dnsDir];
  if (!existsSync(resolvConfPath)) files.push(resolvConfPath);
  const netnsInode = statSync(`/proc/${opts.pid}/ns/net`).ino;
  const { path: leasePath, lease: claimed } = await claimSubnet(
    {
      world_id: opts.worldId,
      pid: opts.pid,
      netns_inode: netnsInode,
      host_veth: hostVeth,
      agent_pid: process.pid,
      dnsmasq_pid: null,
      files,
      nat_table: nat ? `substrate_nat_${hex}` : null,
      created_at: new Date().toISOString(),
    },
    VETH_PREFIX,
  );
  let lease: NetLease = claimed;
  const { host_addr: hostAddr, world_addr: worldAddr } = lease;
  let dnsmasq: DnsmasqProcess | undefined;
  let resolver: AllowlistResolver | undefined;
  let vethCreated = false;
  let natCreated = false;
  let generation = 0;

  const netns = { netnsPid: opts.pid };
  const cleanup = async (): Promise<void> => {
    const errors: unknown[] = [];
    const step = async (f: () => Promise<unknown> | unknown): Promise<void> => {
      try {
        await f();
      } catch (e) {
        errors.push(e);
      }
    };
    resolver?.stop();
    await step(() => dnsmasq?.stop());
    if (natCreated) await step(() => nftDeleteTable("ip", lease.nat_table!));
    // The peer (the world's eth0) goes with it; the world is left with lo only.
    if (vethCreated) await step(() => linkDelete(hostVeth));
    for (const f of files) await step(() => rmSync(f, { force: true, recursive: true }));
    await step(() => rmSync(leasePath, { force: true }));
    if (errors.length > 0) throw new AggregateError(errors, `teardown of world network ${hostVeth} incomplete: ${errors.map(String).join("; ")}`);
  };

  try {
    writeFileSync(resolvConfPath, WORLD_RESOLV_CONF, { mode: 0o644 });
    // Host side first; the peer is created directly inside the world's netns under its final name.
    if (await linkExists(hostVeth)) {
      throw new NetConfigError(`host interface ${hostVeth} already exists (a leftover of world ${opts.worldId}?): run the netns GC or \`ip link del ${hostVeth}\``);
    }
    vethCreated = true; // set before the call: a half-done batch may have created it
    await ipBatch([
      `link add ${hostVeth} type veth peer name eth0 netns ${opts.pid}`,
      `addr add ${hostAddr}/30 dev ${hostVeth}`,
      `link set ${hostVeth} up`,
    ]);
    // The firewall goes in before the world's link comes up: no window without it.
    const user = dnsmasqUser(opts.pid);
    await nftApply(renderTable({ upstream, dnsmasqUid: user.uid, ports, ips }), netns);
    await ipBatch(
      ["link set lo up", `addr add ${worldAddr}/30 dev eth0`, "link set eth0 up", `route add default via ${hostAddr}`],
      netns,
    );

    writeFileSync(confPath, renderDnsmasqConf({ serversFile: serversPath, user: user.user, filterAaaa: dm.filterAaaa, nftset: dm.nftset }), { mode: 0o644 });
    writeFileSync(serversPath, renderServersFile(rules, upstream, generation), { mode: 0o644 });
    // In the world's PID namespace too: dnsmasq can never outlive the world (see spawnDnsmasq).
    dnsmasq = spawnDnsmasq({ confFile: confPath, netnsPid: opts.pid, ...(opts.joinPidns !== false && ownPidns(opts.pid) ? { worldPidns: opts.pid } : {}) });
    // Ready = bound (it binds before it reads servers) and the servers file is loaded.
    await dnsmasq.waitForLog(new RegExp(generationMarker(generation).replaceAll(".", "\\.")), 5000, 0);
    lease = { ...lease, dnsmasq_pid: dnsmasq.pid };
    writeLease(leasePath, lease);

    if (nat) {
      const [net] = [`${intToIp(cidrRange(`${hostAddr}/30`).start)}/30`];
      natCreated = true;
      await nftApply(
        [
          `table ip ${lease.nat_table} {`,
          "  chain postrouting {",
          "    type nat hook postrouting priority srcnat; policy accept;",
          `    ip saddr ${net} oifname != "${hostVeth}" masquerade`,
          "  }",
          "}",
          "",
        ].join("\n"),
      );
    }

    const applyIps = (resolved: string[]): Promise<void> => nftApply(`${renderSetUpdate({ ips: resolved }).join("\n")}\n`, netns);
    resolver = new AllowlistResolver(rules, upstream, refreshSecs, applyIps, log);
    const firstDelay = await resolver.refresh(ips);

    // Every change to the world's network state goes through this queue: a timer pass and an
    // update() never interleave their transactions.
    let queue: Promise<unknown> = Promise.resolve();
    let torn: Promise<void> | undefined;
    const serial = <T>(f: () => Promise<T>): Promise<T> => {
      const p = queue.then(() => {
        if (torn) throw new Error(`world network ${hostVeth} was torn down`);
        return f();
      });
      queue = p.catch(() => {});
      return p;
    };
    const pass = (): Promise<number> => serial(() => resolver!.refresh(ips));
    resolver.schedule(firstDelay, pass);

    return {
      resolvConfPath,
      hostVeth,
      worldAddr,
      hostAddr,
      get dnsmasqPid() {
        return dnsmasq!.pid;
      },
      update: (u) =>
        serial(async () => {
          const newRules = u.allowedDomains === undefined ? rules : parseAllowedDomains(u.allowedDomains);
          const newIps = u.allowedIps === undefined ? ips : validateIps(u.allowedIps);
          const newPorts = u.ports === undefined ? ports : validatePorts(u.ports);
          const domainsChanged = u.allowedDomains !== undefined;
          if (domainsChanged) {
            generation++;
            writeFileSync(serversPath, renderServersFile(newRules, upstream, generation));
            const since = dnsmasq!.lineCount();
            dnsmasq!.reload();
            await dnsmasq!.waitForLog(new RegExp(generationMarker(generation).replaceAll(".", "\\.")), 5000, since);
          }
          rules = newRules;
          ips = newIps;
          ports = newPorts;
          resolver!.setRules(rules);
          const r = await resolver!.resolveAll();
          // One transaction: addresses, ports, and (when names changed) what dnsmasq had learnt.
          await nftApply(`${renderSetUpdate({ ips: [...r.ips, ...ips], ports, flushDnsIps: domainsChanged }).join("\n")}\n`, netns);
          resolver!.lastRefresh = new Date();
          resolver!.schedule(r.nextSecs, pass);
        }),
      refresh: () => pass().then((next) => resolver!.schedule(next, pass)),
      teardown: () => {
        torn ??= (async () => {
          resolver?.stop();
          await queue;
          await cleanup();
        })();
        return torn;
      },
      info: async () => ({
        host_veth: hostVeth,
        host_addr: hostAddr,
        world_addr: worldAddr,
        resolver: "127.0.0.53" as const,
        upstream_dns: upstream.port === 53 ? upstream.host : `${upstream.host}:${upstream.port}`,
        allowed_domains: rules.map((r) => (r.wildcard ? `*.${r.name}` : r.name)),
        allowed_ips: ips,
        ports,
        resolved_ips: await nftSetElements(TABLE_FAMILY, TABLE_NAME, "allowed_ips", netns),
        nat,
        last_refresh: resolver!.lastRefresh?.toISOString() ?? null,
      }),
    };
  } catch (e) {
    await cleanup().catch((c: unknown) => log(`cleanup after failed setup: ${String(c)}`));
    throw e;
  }
}

/** Where the state lives (lease files); exported for the GC and tests. */
export { netStateDir };

/**
 * Does `pid` fork into a PID namespace other than ours (a real world)? Only then does dnsmasq
 * join it: a bare network namespace (tests, or a world without --pid) keeps the old model, in
 * which the PID we track is dnsmasq's own and the GC's kill reaches it.
 */
function ownPidns(pid: number): boolean {
  try {
    return readlinkSync(`/proc/${pid}/ns/pid_for_children`) !== readlinkSync("/proc/self/ns/pid");
  } catch {
    return false;
  }
}
