/**
 * The /30 address pool and the lease files that make allocation safe across concurrent
 * worlds and agent processes.
 *
 * Pool: `SUBSTRATE_WORLD_NET_POOL` (default 10.201.0.0/16 = 16384 worlds). Block i gives
 * host side .1 and world side .2 of its /30. Blocks overlapping an address or route that
 * already exists on the host (a LAN, Docker, Lima's 192.168.5.0/24) are skipped.
 *
 * Lease: `<state>/leases/<i>.json` created with O_EXCL ('wx'): the kernel would happily put
 * the same address on two veths, so the file system is the arbiter. A lease whose agent
 * process is dead and whose veth is gone is stale and may be taken over.
 */
import { mkdirSync, openSync, closeSync, writeSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { NetLease } from "../../../src/contract/net.ts";
import { addrList, routeList, linkList } from "../../../src/sys/ip.ts";
import { cidrRange, intToIp, overlaps, type Range } from "./ipv4.ts";
import { NetConfigError } from "./domains.ts";

export const DEFAULT_POOL = "10.201.0.0/16";
/**
 * Not under /run/substrate: that directory may be 0750 (systemd RuntimeDirectoryMode) and
 * dnsmasq, running as its own user, must be able to reach its files under `dns/`.
 */
export const netStateDir = (): string => process.env.SUBSTRATE_NET_STATE_DIR ?? "/run/substrate-net";
export const leaseDir = (state = netStateDir()): string => join(state, "leases");
/** Per-world dnsmasq files; the chain of directories is 0755 (contents: only the allowlist). */
export function dnsDirFor(hex: string, state = netStateDir()): string {
  mkdirSync(state, { recursive: true, mode: 0o755 });
  mkdirSync(join(state, "dns"), { recursive: true, mode: 0o755 });
  return join(state, "dns", hex);
}

export function poolRange(): Range {
  const pool = process.env.SUBSTRATE_WORLD_NET_POOL ?? DEFAULT_POOL;
  try {
    const r = cidrRange(pool);
    if (r.end - r.start + 1 < 4) throw new RangeError("too small");
    return r;
  } catch {
    throw new NetConfigError(
      `SUBSTRATE_WORLD_NET_POOL=${JSON.stringify(pool)} is not an IPv4 CIDR of at least /30: use e.g. ${DEFAULT_POOL}`,
    );
  }
}

export const blockAddrs = (pool: Range, i: number): { subnet: Range; host: string; world: string } => {
  const start = pool.start + i * 4;
  return { subnet: { start, end: start + 3 }, host: intToIp(start + 1), world: intToIp(start + 2) };
};

export const procAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
};

export function readLease(path: string): NetLease | undefined {
  try {
    return NetLease.parse(JSON.parse(readFileSync(path, "utf8")));
  } catch {
    return undefined;
  }
}

export function listLeases(state = netStateDir()): Array<{ path: string; lease: NetLease | undefined }> {
  let names: string[];
  try {
    names = readdirSync(leaseDir(state));
  } catch {
    return [];
  }
  return names
    .filter((n) => /^\d+\.json$/.test(n))
    .map((n) => {
      const path = join(leaseDir(state), n);
      return { path, lease: readLease(path) };
    });
}

/** Rewrites a lease in place (atomic rename; the O_EXCL claim already happened). */
export function writeLease(path: string, lease: NetLease): void {
  const tmp = `${path}.tmp${process.pid}`;
  const fd = openSync(tmp, "w", 0o600);
  try {
    writeSync(fd, `${JSON.stringify(NetLease.parse(lease))}\n`);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/** Blocks the host already uses (addresses and routes outside our own veths). */
async function hostRangesInUse(prefix: string): Promise<Range[]> {
  const [addrs, routes] = await Promise.all([addrList(), routeList()]);
  const out: Range[] = [];
  for (const a of addrs) {
    if (a.ifname.startsWith(prefix)) continue;
    for (const i of a.addr_info) if (i.family === "inet") out.push(cidrRange(`${i.local}/${i.prefixlen}`));
  }
  for (const r of routes) {
    if (r.dev?.startsWith(prefix) || r.dst === "default") continue;
    try {
      out.push(cidrRange(r.dst));
    } catch {
      // multicast/broadcast or other forms we do not need to avoid
    }
  }
  return out;
}

/**
 * Claims a free /30. `lease` is written with everything but the subnet fields, which
 * this fills in. Returns the lease path and the claimed lease.
 */
export async function claimSubnet(
  base: Omit<NetLease, "subnet_index" | "host_addr" | "world_addr">,
  vethPrefix: string,
): Promise<{ path: string; lease: NetLease }> {
  const pool = poolRange();
  const dir = leaseDir();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const inUse = await hostRangesInUse(vethPrefix);
  const blocks = Math.floor((pool.end - pool.start + 1) / 4);
  let links: Set<string> | undefined;
  for (let i = 0; i < blocks; i++) {
    const b = blockAddrs(pool, i);
    if (inUse.some((r) => overlaps(r, b.subnet))) continue;
    const path = join(dir, `${i}.json`);
    const lease: NetLease = { ...base, subnet_index: i, host_addr: b.host, world_addr: b.world };
    let fd: number;
    try {
      fd = openSync(path, "wx", 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      // Taken. Stale only if its agent is dead and its veth is gone (or the file is garbage).
      const old = readLease(path);
      // An unreadable lease may be one being written right now: only old garbage is stale.
      if (!old && Date.now() - statSync(path, { throwIfNoEntry: false })!.mtimeMs < 60_000) continue;
      if (old && procAlive(old.agent_pid)) continue;
      links ??= new Set((await linkList()).map((l) => l.ifname));
      if (old && links.has(old.host_veth)) continue;
      rmSync(path, { force: true });
      try {
        fd = openSync(path, "wx", 0o600);
      } catch {
        continue; // someone else took it over first
      }
    }
    try {
      writeSync(fd, `${JSON.stringify(NetLease.parse(lease))}\n`);
    } finally {
      closeSync(fd);
    }
    return { path, lease };
  }
  throw new NetConfigError(
    `no free /30 left in the world network pool ${intToIp(pool.start)}-${intToIp(pool.end)}: tear down idle worlds or set SUBSTRATE_WORLD_NET_POOL to a larger free range`,
  );
}
