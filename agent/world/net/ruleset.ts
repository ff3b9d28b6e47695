/**
 * The nftables table every isolated world gets, INSIDE its own network namespace (the
 * host ruleset is never touched). Pure rendering; `index.ts` applies it with `nft -f -`.
 *
 *   table inet substrate
 *     set allowed_ips    ipv4_addr, interval   ← resolver task + literal allowed IPs/CIDRs
 *     set dns_ips        ipv4_addr, timeout 1h ← dnsmasq `nftset=` (what the world was told)
 *     set allowed_ports  inet_service           ← the policy's TCP ports (default 443, 80)
 *     chain output (policy drop): lo → IPv6 dropped → established → dnsmasq upstream DNS
 *                                 → allowed ip+port → TCP reset / ICMP admin-prohibited
 *     chain input  (policy drop): lo, established/related
 *
 * Why two address sets: the resolver task asks upstream itself and replaces `allowed_ips`
 * atomically (flush + add in one transaction), but a CDN may hand the world a different
 * address than it handed us a second earlier; dnsmasq adds every address it actually answers
 * for an allowed name to `dns_ips`, so what the world resolved is what it may connect to.
 *
 * Why reject and not silent drop at the end: a dropped SYN leaves `curl`/`pip` hanging for
 * minutes; a TCP reset (or ICMP admin-prohibited) fails the connection at once. The packet
 * never leaves the world either way. IPv6 gets the same treatment: nothing is sent.
 */
import { mergeRanges, rangeToNft, cidrRange, type Range } from "./ipv4.ts";

export const TABLE_FAMILY = "inet";
export const TABLE_NAME = "substrate";
export const DNS_IPS_TIMEOUT_SECS = 3600;

export interface RulesetInput {
  /** Upstream resolver dnsmasq may query (port 53, udp + tcp). */
  upstream: { host: string; port: number };
  /** uid of dnsmasq's sockets as this netns sees them (nft `meta skuid`). */
  dnsmasqUid: number;
  ports: number[];
  /** Addresses/CIDRs, already validated. */
  ips: string[];
}

export function ipElements(ips: string[]): string[] {
  const ranges: Range[] = ips.map(cidrRange);
  return mergeRanges(ranges).map(rangeToNft);
}

const elems = (xs: Array<string | number>): string => `{ ${xs.join(", ")} }`;

/** Creates the whole table (fails if it exists: a world gets it once). */
export function renderTable(i: RulesetInput): string {
  const up = i.upstream;
  const lines = [
    `table ${TABLE_FAMILY} ${TABLE_NAME} {`,
    "  set allowed_ips { type ipv4_addr; flags interval; }",
    `  set dns_ips { type ipv4_addr; flags timeout; timeout ${DNS_IPS_TIMEOUT_SECS}s; }`,
    "  set allowed_ports { type inet_service; }",
    "  chain output {",
    "    type filter hook output priority filter; policy drop;",
    '    oif "lo" accept',
    '    meta nfproto ipv6 counter reject with icmpx type admin-prohibited comment "drop all IPv6 egress"',
    "    ct state established,related accept",
    `    meta skuid ${i.dnsmasqUid} ip daddr ${up.host} udp dport ${up.port} accept comment "dnsmasq upstream"`,
    `    meta skuid ${i.dnsmasqUid} ip daddr ${up.host} tcp dport ${up.port} accept comment "dnsmasq upstream"`,
    "    ip daddr @allowed_ips tcp dport @allowed_ports accept",
    "    ip daddr @dns_ips tcp dport @allowed_ports accept",
    '    meta l4proto tcp counter reject with tcp reset comment "not allowlisted"',
    '    counter reject with icmpx type admin-prohibited comment "not allowlisted"',
    "  }",
    "  chain input {",
    "    type filter hook input priority filter; policy drop;",
    '    iif "lo" accept',
    "    ct state established,related accept",
    "  }",
    "}",
    ...renderSetUpdate({ ips: i.ips, ports: i.ports }),
  ];
  return `${lines.join("\n")}\n`;
}

/**
 * One transaction replacing set contents: flush + add for each set given. Applied with
 * `nft -f`, so a packet sees either the old or the new contents, never an empty set.
 */
export function renderSetUpdate(u: { ips?: string[]; ports?: number[]; flushDnsIps?: boolean }): string[] {
  const t = `${TABLE_FAMILY} ${TABLE_NAME}`;
  const out: string[] = [];
  if (u.ips !== undefined) {
    out.push(`flush set ${t} allowed_ips`);
    const e = ipElements(u.ips);
    if (e.length > 0) out.push(`add element ${t} allowed_ips ${elems(e)}`);
  }
  if (u.ports !== undefined) {
    out.push(`flush set ${t} allowed_ports`);
    if (u.ports.length > 0) out.push(`add element ${t} allowed_ports ${elems([...new Set(u.ports)])}`);
  }
  if (u.flushDnsIps) out.push(`flush set ${t} dns_ips`);
  return out;
}
