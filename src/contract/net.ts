/**
 * World network (agent side): the lease file each isolated world's network holds under
 * `/run/substrate/net/leases/` (read by the netns garbage collector, possibly of another
 * agent process after a crash) and the summary a world reports about its network.
 */
import { z } from "zod";

const Ipv4 = z.string().regex(/^\d{1,3}(\.\d{1,3}){3}$/, "expected a dotted IPv4 address");

export const NetLease = z.strictObject({
  world_id: z.string().min(1),
  /** Host PID whose /proc/PID/ns/net is the world's network namespace. */
  pid: z.number().int().positive(),
  /** Inode of that namespace at setup: tells a reused PID from the world. */
  netns_inode: z.number().int().nonnegative(),
  /** Index of the /30 in the pool; the lease file is named after it. */
  subnet_index: z.number().int().nonnegative(),
  host_veth: z.string().regex(/^[A-Za-z0-9_.-]{1,15}$/),
  host_addr: Ipv4,
  world_addr: Ipv4,
  /** The agent process that set it up (a dead one means nobody will tear it down). */
  agent_pid: z.number().int().positive(),
  dnsmasq_pid: z.number().int().positive().nullable(),
  /** Our files (dnsmasq config, servers file, resolv.conf if we wrote it): removed at teardown. */
  files: z.array(z.string().startsWith("/")),
  /** nft table of the opt-in NAT (`ip substrate_nat_<hex>` in the host netns), if any. */
  nat_table: z.string().nullable(),
  created_at: z.string().datetime(),
});
export type NetLease = z.infer<typeof NetLease>;

export const WorldNetworkInfo = z.strictObject({
  host_veth: z.string(),
  host_addr: Ipv4,
  world_addr: Ipv4,
  resolver: z.literal("127.0.0.53"),
  upstream_dns: z.string(),
  allowed_domains: z.array(z.string()),
  allowed_ips: z.array(z.string()),
  ports: z.array(z.number().int().min(1).max(65535)),
  /** Addresses currently in the `allowed_ips` nft set (merged ranges). */
  resolved_ips: z.array(z.string()),
  nat: z.boolean(),
  last_refresh: z.string().datetime().nullable(),
});
export type WorldNetworkInfo = z.infer<typeof WorldNetworkInfo>;
