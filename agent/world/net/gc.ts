/**
 * Garbage collection of world networks (spec env: SUBSTRATE_NETNS_GC_INTERVAL_SECS, default
 * 600, 0 = off; SUBSTRATE_NETNS_GC_TTL_SECS, default 0 = off).
 *
 * A sweep:
 * 1. For every lease whose world is gone (its PID no longer has the netns inode recorded at
 *    setup; a reused PID has another inode): kill its dnsmasq (only if /proc/PID/cmdline
 *    still names that world's config file: PIDs are reused too), delete its veth and NAT
 *    table, remove its files and the lease. A dnsmasq left running would keep the dead
 *    world's netns (and so the veth) alive forever: it is the one thing that must go first.
 * 2. Every `sbx<8 hex>` veth and `ip substrate_nat_<8 hex>` table no lease refers to is an
 *    orphan (leases are written before anything is created) and is deleted.
 * 3. With a TTL: worlds alive for longer than the TTL are handed to `destroyWorld(worldId)`
 *    (the world manager's own teardown, which calls WorldNetwork.teardown()).
 *
 * Interpretation (docs/WORLD.md): the spec's "TTL before namespaces are eligible for GC" is
 * read as a maximum world age; dead worlds are collected at the next sweep regardless.
 */
import { readFileSync, rmSync, statSync } from "node:fs";
import { linkDelete, linkList } from "../../../src/sys/ip.ts";
import { nft, nftDeleteTable } from "../../../src/sys/nft.ts";
import type { NetLease } from "../../../src/contract/net.ts";
import { listLeases, netStateDir, procAlive } from "./pool.ts";

export interface NetnsGcOptions {
  /** Seconds between sweeps; default SUBSTRATE_NETNS_GC_INTERVAL_SECS or 600; 0 = no timer. */
  intervalSecs?: number;
  /** Maximum world age in seconds; default SUBSTRATE_NETNS_GC_TTL_SECS or 0 = off. */
  ttlSecs?: number;
  /** Called for live worlds older than the TTL. */
  destroyWorld?: (worldId: string) => Promise<void>;
  log?: (msg: string) => void;
}

export interface GcReport {
  /** World ids whose leftovers were removed (world gone). */
  collected: string[];
  /** Orphan veths / NAT tables deleted. */
  orphans: string[];
  /** World ids handed to destroyWorld because of the TTL. */
  expired: string[];
  errors: string[];
}

export interface NetnsGc {
  sweep(): Promise<GcReport>;
  stop(): void;
  readonly intervalSecs: number;
  readonly ttlSecs: number;
}

const envSecs = (name: string, dflt: number): number => {
  const v = process.env[name];
  if (v === undefined || v === "") return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new RangeError(`${name}=${JSON.stringify(v)} must be a number of seconds ≥ 0`);
  return n;
};

export function worldAlive(l: NetLease): boolean {
  try {
    return statSync(`/proc/${l.pid}/ns/net`).ino === l.netns_inode;
  } catch {
    return false;
  }
}

/** Kills the lease's dnsmasq if that PID is still our dnsmasq for that world. */
function killDnsmasq(l: NetLease): void {
  if (l.dnsmasq_pid === null || !procAlive(l.dnsmasq_pid)) return;
  let cmdline = "";
  try {
    cmdline = readFileSync(`/proc/${l.dnsmasq_pid}/cmdline`, "utf8");
  } catch {
    return;
  }
  const conf = l.files.find((f) => f.endsWith("dnsmasq.conf"));
  if (conf !== undefined && cmdline.includes("dnsmasq") && cmdline.includes(`--conf-file=${conf}`)) {
    process.kill(l.dnsmasq_pid, "SIGKILL");
  }
}

async function collect(l: NetLease, path: string): Promise<void> {
  killDnsmasq(l);
  if (l.nat_table) await nftDeleteTable("ip", l.nat_table);
  await linkDelete(l.host_veth);
  for (const f of l.files) rmSync(f, { force: true, recursive: true });
  rmSync(path, { force: true });
}

export async function sweepOnce(o: { ttlSecs: number; destroyWorld?: (id: string) => Promise<void> }): Promise<GcReport> {
  const report: GcReport = { collected: [], orphans: [], expired: [], errors: [] };
  const leases = listLeases(netStateDir());
  const known = new Set<string>();
  const knownNat = new Set<string>();
  for (const { path, lease } of leases) {
    if (!lease) continue;
    known.add(lease.host_veth);
    if (lease.nat_table) knownNat.add(lease.nat_table);
    // A lease being set up right now by a live agent may not have its veth yet: only act on
    // dead worlds, and on live ones only through the TTL callback.
    if (!worldAlive(lease)) {
      if (procAlive(lease.agent_pid) && Date.now() - Date.parse(lease.created_at) < 30_000 && lease.dnsmasq_pid === null) continue;
      try {
        await collect(lease, path);
        report.collected.push(lease.world_id);
      } catch (e) {
        report.errors.push(`${lease.world_id}: ${(e as Error).message}`);
      }
    } else if (o.ttlSecs > 0 && o.destroyWorld && Date.now() - Date.parse(lease.created_at) > o.ttlSecs * 1000) {
      try {
        await o.destroyWorld(lease.world_id);
        report.expired.push(lease.world_id);
      } catch (e) {
        report.errors.push(`${lease.world_id}: destroyWorld: ${(e as Error).message}`);
      }
    }
  }
  // Orphans: our naming scheme, no lease (leases are claimed before anything is created).
  for (const link of await linkList()) {
    if (/^sbx[0-9a-f]{8}$/.test(link.ifname) && !known.has(link.ifname)) {
      try {
        await linkDelete(link.ifname);
        report.orphans.push(link.ifname);
      } catch (e) {
        report.errors.push(`${link.ifname}: ${(e as Error).message}`);
      }
    }
  }
  const tables = (await nft(["list", "tables", "ip"]).catch(() => "")).split("\n");
  for (const t of tables) {
    const name = /^table ip (substrate_nat_[0-9a-f]{8})$/.exec(t.trim())?.[1];
    if (name && !knownNat.has(name)) {
      try {
        await nftDeleteTable("ip", name);
        report.orphans.push(`ip ${name}`);
      } catch (e) {
        report.errors.push(`ip ${name}: ${(e as Error).message}`);
      }
    }
  }
  return report;
}

/** Starts the periodic sweep (unref'd timer) and returns a handle; sweep() may also be called directly. */
export function startNetnsGc(opts: NetnsGcOptions = {}): NetnsGc {
  const intervalSecs = opts.intervalSecs ?? envSecs("SUBSTRATE_NETNS_GC_INTERVAL_SECS", 600);
  const ttlSecs = opts.ttlSecs ?? envSecs("SUBSTRATE_NETNS_GC_TTL_SECS", 0);
  const log = opts.log ?? ((m: string) => console.error(`substrate netns-gc: ${m}`));
  let running: Promise<GcReport> | undefined;
  const sweep = (): Promise<GcReport> => {
    running ??= sweepOnce({ ttlSecs, destroyWorld: opts.destroyWorld }).finally(() => {
      running = undefined;
    });
    return running;
  };
  let timer: ReturnType<typeof setInterval> | undefined;
  if (intervalSecs > 0) {
    timer = setInterval(() => {
      sweep()
        .then((r) => {
          for (const e of r.errors) log(e);
        })
        .catch((e: unknown) => log(`sweep failed: ${(e as Error).message}`));
    }, intervalSecs * 1000);
    timer.unref();
  }
  return {
    sweep,
    stop: () => clearInterval(timer),
    intervalSecs,
    ttlSecs,
  };
}
