/**
 * The world's network namespace as egress needs it (pure rendering + one apply function the
 * rootless spawner calls from inside the world). Nothing here touches the host's netns.
 *
 *   lo up: 127.0.0.1/8, 198.18.0.1/32 (so glibc's AI_ADDRCONFIG sees an IPv4 address)
 *   route  local 0.0.0.0/0 dev lo table local: every IPv4 destination is "local", so a
 *          connect() reaches the nft hook instead of failing with ENETUNREACH; the packet can
 *          only go to lo, there is no other device
 *   nft    table inet substrate (renderWorldTable)
 */
export const SYNTHETIC_LO_ADDR = "198.18.0.1";
export const TABLE = "inet substrate";
export const DNS_ADDR = "127.0.0.53";
/** The stub listens here; nft maps 127.0.0.53:53 to it (no privileged port, no capability). */
export const DNS_PORT = 5353;
export const PROXY_PORT = 3128;
export const TRANSPARENT_PORT = 15001;

export const worldIpBatch = (): string[] => ["link set lo up", `addr add ${SYNTHETIC_LO_ADDR}/32 dev lo`, "route add local 0.0.0.0/0 dev lo table local"];

/**
 * The backstop. Every TCP connection not to loopback is redirected to the helper's
 * transparent listener; the stub's well-known address is mapped to its port; what is left
 * after NAT may only go to loopback (the stub, the proxy, the redirected flows, the world's
 * own local services). IPv6 other than ::1 and UDP other than loopback are refused at once.
 */
export function renderWorldTable(): string {
  return `${[
    `table ${TABLE} {`,
    "  chain out_nat {",
    "    type nat hook output priority -100; policy accept;",
    `    ip daddr ${DNS_ADDR} udp dport 53 dnat ip to ${DNS_ADDR}:${DNS_PORT} comment "the DNS stub"`,
    `    ip daddr ${DNS_ADDR} tcp dport 53 dnat ip to ${DNS_ADDR}:${DNS_PORT} comment "the DNS stub (TCP)"`,
    `    ip daddr != 127.0.0.0/8 meta l4proto tcp redirect to :${TRANSPARENT_PORT} comment "every other TCP connection: the gateway decides"`,
    "  }",
    "  chain output {",
    "    type filter hook output priority 0; policy drop;",
    "    ct state established,related accept",
    "    ip daddr 127.0.0.0/8 accept",
    "    ip6 daddr ::1 accept",
    '    meta nfproto ipv6 counter reject with icmpx type admin-prohibited comment "no IPv6 egress"',
    '    meta l4proto tcp counter reject with tcp reset comment "not via the gateway"',
    '    counter reject with icmpx type admin-prohibited comment "UDP other than the stub, ICMP, the rest"',
    "  }",
    "}",
  ].join("\n")}\n`;
}

/** What a rootless world's spawner applies itself (WorldBootConfig.egressNet). */
export interface EgressNetBoot {
  ip: string[];
  nft: string;
}
export const egressNetBoot = (): EgressNetBoot => ({ ip: worldIpBatch(), nft: renderWorldTable() });

/**
 * Run by the spawner (stage 1, still holding the user namespace's capabilities) inside a
 * rootless world; returns an error text or null.
 */
export function applyEgressNet(b: EgressNetBoot): string | null {
  const enc = new TextEncoder();
  const ip = Bun.spawnSync(["ip", "-batch", "-"], { stdin: enc.encode(`${b.ip.join("\n")}\n`), stdout: "ignore", stderr: "pipe" });
  if (ip.exitCode !== 0) return `ip: ${ip.stderr.toString().trim()}`;
  const nft = Bun.spawnSync(["nft", "-f", "-"], { stdin: enc.encode(b.nft), stdout: "ignore", stderr: "pipe" });
  if (nft.exitCode !== 0) return `nft: ${nft.stderr.toString().trim()}`;
  return null;
}
