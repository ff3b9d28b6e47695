/** The /30 pool: concurrent claims never share a block; stale leases are taken over. */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { claimSubnet, leaseDir, listLeases } from "../../agent/world/net/pool.ts";

const state = mkdtempSync(join(tmpdir(), "substrate-netpool-"));
const saved = process.env.SUBSTRATE_NET_STATE_DIR;
process.env.SUBSTRATE_NET_STATE_DIR = state;
afterAll(() => {
  if (saved === undefined) delete process.env.SUBSTRATE_NET_STATE_DIR;
  else process.env.SUBSTRATE_NET_STATE_DIR = saved;
  rmSync(state, { recursive: true, force: true });
});

const base = (i: number) => ({
  world_id: `wld_test_${i}`,
  pid: 1,
  netns_inode: 1,
  host_veth: `sbx0000000${i % 10}`,
  agent_pid: process.pid,
  dnsmasq_pid: null,
  files: [],
  nat_table: null,
  created_at: new Date().toISOString(),
});

test("16 concurrent claims get 16 distinct /30 blocks", async () => {
  const got = await Promise.all(Array.from({ length: 16 }, (_, i) => claimSubnet(base(i), "sbx")));
  const idx = got.map((g) => g.lease.subnet_index);
  expect(new Set(idx).size).toBe(16);
  const hosts = new Set(got.map((g) => g.lease.host_addr));
  expect(hosts.size).toBe(16);
  for (const g of got) expect(g.lease.world_addr.split(".")[3]).toBe(String(Number(g.lease.host_addr.split(".")[3]) + 1));
  expect(listLeases(state).length).toBe(16);
  for (const g of got) rmSync(g.path);
});

test("a lease of a dead agent whose veth is gone is taken over; a live one is not", async () => {
  const first = await claimSubnet(base(1), "sbx");
  // Pretend its agent died: PID 2^22+1 does not exist (pid_max is at most 2^22).
  writeFileSync(first.path, JSON.stringify({ ...first.lease, agent_pid: 4194305 }));
  const second = await claimSubnet(base(2), "sbx");
  expect(second.lease.subnet_index).toBe(first.lease.subnet_index);
  const third = await claimSubnet(base(3), "sbx");
  expect(third.lease.subnet_index).not.toBe(second.lease.subnet_index);
  rmSync(leaseDir(state), { recursive: true });
});
