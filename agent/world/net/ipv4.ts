/** IPv4 arithmetic for the address pool and the nft interval set (pure, no I/O). */
import { isIpv4, isIpv4Cidr } from "../../../src/sys/nft.ts";

export const ipToInt = (ip: string): number =>
  ip.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);

export const intToIp = (n: number): string =>
  [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");

export interface Range {
  start: number;
  end: number;
}

/** "a.b.c.d" or "a.b.c.d/n" → the covered range (host bits ignored, so 10.0.0.5/24 = 10.0.0.0/24). */
export function cidrRange(cidr: string): Range {
  if (!isIpv4Cidr(cidr)) throw new RangeError(`not an IPv4 address or CIDR: ${cidr}`);
  const [addr, lenS] = cidr.split("/") as [string, string | undefined];
  const len = lenS === undefined ? 32 : Number(lenS);
  const size = 2 ** (32 - len);
  const start = Math.floor(ipToInt(addr) / size) * size;
  return { start, end: start + size - 1 };
}

/**
 * Sorted, merged ranges. nft rejects overlapping elements in one `add element` on an
 * interval set ("conflicting intervals"), and a resolver can return the same address for
 * two domains, so everything is merged before it reaches a script.
 */
export function mergeRanges(rs: Range[]): Range[] {
  const sorted = [...rs].sort((a, b) => a.start - b.start);
  const out: Range[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.start <= last.end + 1) last.end = Math.max(last.end, r.end);
    else out.push({ ...r });
  }
  return out;
}

/** nft element syntax for a range: a single address or "a-b". */
export const rangeToNft = (r: Range): string =>
  r.start === r.end ? intToIp(r.start) : `${intToIp(r.start)}-${intToIp(r.end)}`;

export const overlaps = (a: Range, b: Range): boolean => a.start <= b.end && b.start <= a.end;

export { isIpv4, isIpv4Cidr };
