/**
 * The address guard: which resolved addresses the gateway may dial (pure, apart from reading
 * the host's own interface addresses).
 *
 *   always refused  loopback 127/8 and ::1, 0/8 and ::, link-local 169.254/16 (the cloud
 *                   metadata address 169.254.169.254 among them) and fe80::/10, multicast
 *                   224/4 and ff00::/8, reserved 240/4 and broadcast, cloud metadata
 *                   singletons (100.100.100.200, 168.63.129.16, fd00:ec2::/32), the
 *                   synthetic range 198.18/15 (the worlds' own name tokens), and every
 *                   address of the host itself
 *   private         10/8, 172.16/12, 192.168/16, 100.64/10 (CGNAT), 192.0.0/24, fc00::/7
 *                   (ULA): only when an address rule of the policy covers it (rules.ts)
 *   anything else   public: dialable
 *
 * IPv4-mapped IPv6 (::ffff:a.b.c.d) is judged as the IPv4 address it carries.
 */
import { networkInterfaces } from "node:os";
import { cidrRange, ipToInt, isIpv4 } from "../world/net/ipv4.ts";

export type AddrClass = "public" | "private" | "denied";

const range = (c: string): [number, number] => {
  const r = cidrRange(c);
  return [r.start, r.end];
};

const DENIED_V4: Array<[string, [number, number]]> = [
  ["loopback", range("127.0.0.0/8")],
  ["this-network", range("0.0.0.0/8")],
  ["link-local", range("169.254.0.0/16")],
  ["multicast", range("224.0.0.0/4")],
  ["reserved", range("240.0.0.0/4")], // includes 255.255.255.255
  ["metadata", range("100.100.100.200/32")],
  ["metadata", range("168.63.129.16/32")],
  ["synthetic", range("198.18.0.0/15")],
];
const PRIVATE_V4: Array<[number, number]> = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "192.0.0.0/24"].map(range);

/** Expands an IPv6 text to 8 groups; null if it is not one. */
function v6Groups(s: string): number[] | null {
  const a = s.toLowerCase().split("%")[0]!;
  if (!a.includes(":")) return null;
  let tail4: number[] = [];
  let t = a;
  const m = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (m) {
    if (!isIpv4(m[2]!)) return null;
    const n = ipToInt(m[2]!);
    tail4 = [n >>> 16, n & 0xffff];
    t = m[1]!.endsWith("::") ? m[1]! : m[1]!.slice(0, -1);
  }
  const [h, rest, ...more] = t.split("::");
  if (more.length) return null;
  const head = h ? h.split(":") : [];
  const tl = rest !== undefined && rest !== "" ? rest.split(":") : [];
  const need = 8 - tail4.length;
  const mid = rest === undefined ? [] : Array(need - head.length - tl.length).fill("0");
  const groups = [...head, ...mid, ...tl].map((g) => Number.parseInt(g, 16));
  if (groups.length !== need || groups.some((g) => !Number.isFinite(g) || g < 0 || g > 0xffff)) return null;
  return [...groups, ...tail4];
}

/** `::ffff:a.b.c.d` → a.b.c.d; other addresses unchanged. */
export function unmapV4(ip: string): string {
  const g = v6Groups(ip);
  if (g && g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    return [g[6]! >>> 8, g[6]! & 255, g[7]! >>> 8, g[7]! & 255].join(".");
  }
  return ip;
}

let ownCache: { at: number; set: Set<string> } | undefined;
/** The host's own addresses (every interface of the agent's network namespace), cached 5 s. */
export function hostAddresses(): Set<string> {
  if (ownCache && Date.now() - ownCache.at < 5000) return ownCache.set;
  const set = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) set.add(unmapV4(i.address.toLowerCase()));
  ownCache = { at: Date.now(), set };
  return set;
}

export interface AddrVerdict {
  cls: AddrClass;
  /** For denied: which class ("loopback", "link-local", "host-address", …). */
  why?: string;
}

export function classify(ipIn: string, own: Set<string> = hostAddresses()): AddrVerdict {
  const ip = unmapV4(ipIn.toLowerCase());
  if (own.has(ip)) return { cls: "denied", why: "host-address" };
  if (isIpv4(ip)) {
    const n = ipToInt(ip);
    for (const [why, [a, b]] of DENIED_V4) if (n >= a && n <= b) return { cls: "denied", why };
    if (PRIVATE_V4.some(([a, b]) => n >= a && n <= b)) return { cls: "private" };
    return { cls: "public" };
  }
  const g = v6Groups(ip);
  if (!g) return { cls: "denied", why: "not-an-address" };
  if (g.every((x) => x === 0)) return { cls: "denied", why: "unspecified" };
  if (g.slice(0, 7).every((x) => x === 0) && g[7] === 1) return { cls: "denied", why: "loopback" };
  if ((g[0]! & 0xffc0) === 0xfe80) return { cls: "denied", why: "link-local" };
  if ((g[0]! & 0xff00) === 0xff00) return { cls: "denied", why: "multicast" };
  if (g[0] === 0xfd00 && g[1] === 0x0ec2) return { cls: "denied", why: "metadata" };
  // NAT64 / 6to4 carry an IPv4 address: judge that one.
  if (g[0] === 0x64 && g[1] === 0xff9b) return classify([g[6]! >>> 8, g[6]! & 255, g[7]! >>> 8, g[7]! & 255].join("."), own);
  if (g[0] === 0x2002) return classify([g[1]! >>> 8, g[1]! & 255, g[2]! >>> 8, g[2]! & 255].join("."), own);
  if ((g[0]! & 0xfe00) === 0xfc00) return { cls: "private" };
  return { cls: "public" };
}
