/** Round trips for the world network schemas (src/contract/net.ts). */
import { expect, test } from "bun:test";
import { NetLease, WorldNetworkInfo, newWorldId } from "../../../src/contract/index.ts";

function roundTrip<T>(schema: { parse: (x: unknown) => T }, value: unknown): T {
  const a = schema.parse(value);
  const json = JSON.stringify(a);
  expect(schema.parse(JSON.parse(json))).toEqual(a);
  return a;
}

const lease = {
  world_id: newWorldId(),
  pid: 4242,
  netns_inode: 4026532177,
  subnet_index: 0,
  host_veth: "sbx1a2b3c4d",
  host_addr: "10.201.0.1",
  world_addr: "10.201.0.2",
  agent_pid: 100,
  dnsmasq_pid: null,
  files: ["/run/substrate-net/dns/1a2b3c4d"],
  nat_table: null,
  created_at: new Date(0).toISOString(),
};

test("NetLease round-trips and rejects a veth name over 15 chars", () => {
  roundTrip(NetLease, lease);
  roundTrip(NetLease, { ...lease, dnsmasq_pid: 5, nat_table: "substrate_nat_1a2b3c4d" });
  expect(() => NetLease.parse({ ...lease, host_veth: "sbx1a2b3c4d5e6f7" })).toThrow();
  expect(() => NetLease.parse({ ...lease, extra: 1 })).toThrow();
});

test("WorldNetworkInfo round-trips; the resolver is always 127.0.0.53", () => {
  const info = {
    host_veth: "sbx1a2b3c4d",
    host_addr: "10.201.0.1",
    world_addr: "10.201.0.2",
    resolver: "127.0.0.53",
    upstream_dns: "10.0.0.2",
    allowed_domains: ["pypi.org", "*.github.com"],
    allowed_ips: ["10.9.0.0/16"],
    ports: [443, 80],
    resolved_ips: ["151.101.0.223"],
    nat: false,
    last_refresh: null,
  };
  roundTrip(WorldNetworkInfo, info);
  expect(() => WorldNetworkInfo.parse({ ...info, resolver: "1.1.1.1" })).toThrow();
  expect(() => WorldNetworkInfo.parse({ ...info, ports: [70000] })).toThrow();
});

// Issue 15: egress gateway schemas.
import { EgressBlocked, EgressEvent, EgressSpec, EgressSummary } from "../../../src/contract/net.ts";

test("EgressEvent / EgressSummary / EgressSpec round-trip; strict", () => {
  const ev = {
    world_id: "wld_x",
    name: "example.org",
    port: 443,
    via: "transparent",
    decision: "deny",
    reason: "not_allowed",
    message: "example.org:443 is not in net.allowed of policy default",
    bytes_up: 0,
    bytes_down: 0,
    duration_ms: 0.5,
    command_span_id: "spn_x",
    pid: 42,
    exe: "/usr/bin/curl",
    policy_id: "default",
  };
  roundTrip(EgressEvent, ev);
  roundTrip(EgressEvent, { ...ev, decision: "allow", reason: "allowed", addr: "93.184.215.14", bytes_up: 10, bytes_down: 20 });
  expect(() => EgressEvent.parse({ ...ev, decision: "maybe" })).toThrow();
  expect(() => EgressEvent.parse({ ...ev, extra: 1 })).toThrow();
  const b = { name: "example.org", port: 443, reason: "not_allowed", policy_id: "default", message: ev.message };
  roundTrip(EgressBlocked, b);
  roundTrip(EgressSummary, { bytes_up: 1, bytes_down: 2, connections: 1, blocked: [b] });
  roundTrip(EgressSpec, { policy_id: "default", total_bytes: 10, bytes_per_sec: 5 });
  expect(() => EgressSpec.parse({ bytes_per_sec: 0 })).toThrow();
});
