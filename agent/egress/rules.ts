/**
 * `net.allowed` → rules, and the one decision "may this world reach NAME:PORT?" (pure, no I/O).
 *
 * An entry is `[!]HOST[:PORTS]`:
 *   HOST   `example.com`     exactly that name
 *          `*.example.com`   every subdomain, any depth, not the apex
 *          `*`               every name (still subject to the address guard)
 *          `10.0.0.5`, `10.1.0.0/16`   an address or range (IPv4): allows connecting to it by
 *                            literal, and lets allowed names resolve into it when it is a
 *                            private range (RFC 1918, CGNAT, ULA…; see addr.ts)
 *   PORTS  absent → 443 and 80; `:22`; `:8000-8100`; `:*` (any port)
 *   `!`    a deny entry: matching it refuses, whatever else matches (deny wins)
 *
 * Names are compared canonically: lowercase ASCII, no trailing dot. A name that is not a
 * valid host name never matches (so `allowed.test\0.evil` or `a b` cannot sneak through).
 */
import { cidrRange, ipToInt, isIpv4, isIpv4Cidr } from "../world/net/ipv4.ts";
import { netEntryProblem } from "../../src/contract/net.ts";

export class EgressRuleError extends Error {
  override name = "EgressRuleError";
}

export const DEFAULT_PORTS: readonly number[] = [443, 80];

export type HostPattern =
  | { kind: "exact"; name: string }
  | { kind: "suffix"; name: string }
  | { kind: "any" }
  | { kind: "cidr"; start: number; end: number; text: string };

export interface EgressRule {
  deny: boolean;
  host: HostPattern;
  /** Inclusive ranges; [[1, 65535]] for `:*`. */
  ports: Array<[number, number]>;
  /** The entry as written (for messages). */
  text: string;
}

const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

/** Lowercase, trailing dot stripped; null when it is not a host name we would ever dial. */
export function canonicalName(raw: string): string | null {
  const s = raw.trim().toLowerCase().replace(/\.$/, "");
  if (s.length === 0 || s.length > 253) return null;
  if (!s.split(".").every((l) => LABEL.test(l))) return null;
  return s;
}

function parsePorts(raw: string | undefined, entry: string): Array<[number, number]> {
  if (raw === undefined) return DEFAULT_PORTS.map((p) => [p, p]);
  if (raw === "*") return [[1, 65535]];
  const out: Array<[number, number]> = [];
  for (const part of raw.split(",")) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(part);
    const a = m ? Number(m[1]) : NaN;
    const b = m?.[2] !== undefined ? Number(m[2]) : a;
    if (!m || a < 1 || b > 65535 || a > b) {
      throw new EgressRuleError(`net.allowed entry ${JSON.stringify(entry)}: ${JSON.stringify(part)} is not a port (1-65535), a range (8000-8100) or *`);
    }
    out.push([a, b]);
  }
  return out;
}

export function parseRule(raw: string): EgressRule {
  const problem = netEntryProblem(raw); // the grammar's one owner (src/contract/net.ts)
  if (problem) throw new EgressRuleError(problem);
  let s = raw.trim();
  const deny = s.startsWith("!");
  if (deny) s = s.slice(1).trim();
  // host:ports — the last ':' splits (no IPv6 literals: IPv6 egress is always refused).
  const i = s.lastIndexOf(":");
  const hostPart = i === -1 ? s : s.slice(0, i);
  const ports = parsePorts(i === -1 ? undefined : s.slice(i + 1), raw);
  let host: HostPattern;
  if (hostPart === "*") host = { kind: "any" };
  else if (isIpv4Cidr(hostPart)) {
    const r = cidrRange(hostPart);
    host = { kind: "cidr", start: r.start, end: r.end, text: hostPart };
  } else if (hostPart.startsWith("*.")) {
    const n = canonicalName(hostPart.slice(2));
    if (!n) throw new EgressRuleError(`net.allowed entry ${JSON.stringify(raw)} is not "*.example.com"`);
    host = { kind: "suffix", name: n };
  } else {
    const n = canonicalName(hostPart);
    if (!n || hostPart.includes("*")) {
      throw new EgressRuleError(
        `net.allowed entry ${JSON.stringify(raw)} is not a host: use "example.com", "*.example.com", "10.0.0.0/8", optionally with ":443", ":8000-8100" or ":*", or "!…" to deny`,
      );
    }
    host = { kind: "exact", name: n };
  }
  return { deny, host, ports, text: raw.trim() };
}

export function parseRules(entries: readonly string[]): EgressRule[] {
  return entries.map(parseRule);
}

const portIn = (r: EgressRule, port: number): boolean => r.ports.some(([a, b]) => port >= a && port <= b);

function hostMatches(h: HostPattern, name: string | null, ip: string | null): boolean {
  switch (h.kind) {
    case "any":
      return name !== null;
    case "exact":
      return name !== null && name === h.name;
    case "suffix":
      return name !== null && name.endsWith(`.${h.name}`);
    case "cidr": {
      if (ip === null || !isIpv4(ip)) return false;
      const n = ipToInt(ip);
      return n >= h.start && n <= h.end;
    }
  }
}

export type RuleVerdict = { allow: true; rule: EgressRule } | { allow: false; reason: "denied_by_rule" | "not_allowed"; rule?: EgressRule };

/**
 * The decision for a destination given by name (ip = null) or by literal address (name =
 * null). Deny entries win over allow entries.
 */
export function decide(rules: readonly EgressRule[], dest: { name: string | null; ip: string | null; port: number }): RuleVerdict {
  const hits = rules.filter((r) => portIn(r, dest.port) && hostMatches(r.host, dest.name, dest.ip));
  const deny = hits.find((r) => r.deny);
  if (deny) return { allow: false, reason: "denied_by_rule", rule: deny };
  const allow = hits.find((r) => !r.deny);
  return allow ? { allow: true, rule: allow } : { allow: false, reason: "not_allowed" };
}

/** May the DNS stub answer this name at all (some allow entry names it on some port, and no deny entry on every port)? */
export function nameAllowed(rules: readonly EgressRule[], name: string): boolean {
  const named = rules.filter((r) => r.host.kind !== "cidr" && hostMatches(r.host, name, null));
  if (!named.some((r) => !r.deny)) return false;
  // A deny entry covering every port removes the name entirely.
  return !named.some((r) => r.deny && r.ports.some(([a, b]) => a === 1 && b === 65535));
}

/** Address rules (allow entries): a private address is dialable when one of these covers it. */
export function addressAllowedByRule(rules: readonly EgressRule[], ip: string): boolean {
  if (!isIpv4(ip)) return false;
  const n = ipToInt(ip);
  return rules.some((r) => !r.deny && r.host.kind === "cidr" && n >= r.host.start && n <= r.host.end);
}

/** Address rules (deny entries): never dial an address a `!10.0.0.0/8` covers. */
export function addressDeniedByRule(rules: readonly EgressRule[], ip: string): EgressRule | undefined {
  if (!isIpv4(ip)) return undefined;
  const n = ipToInt(ip);
  return rules.find((r) => r.deny && r.host.kind === "cidr" && n >= r.host.start && n <= r.host.end);
}
