/**
 * World network (issue 15): the egress gateway's decision records, what an execute result
 * says about a command's egress, the policy's egress settings a world spec carries, and the
 * CLI's end-of-command line.
 */
import { z } from "zod";

// ---------------------------------------------------------------------------------------------
// Egress gateway (issue 15): one decision record per connection or DNS answer, and what a
// command's execute result says about its egress.

export const EgressDecision = z.enum(["allow", "deny"]);
export const EgressVia = z.enum(["proxy", "socks", "transparent", "dns"]);
/**
 * Why: allowed | not_allowed (no net.allowed entry) | denied_by_rule (a `!` entry) |
 * address_denied (every address of the name is in a refused class) | unresolvable |
 * unknown_address (a synthetic address the world was never given) | ipv6 | budget |
 * rate_limit (total_bytes spent mid-connection) | dial_failed | bad_request
 */
export const EgressReason = z.enum([
  "allowed",
  "not_allowed",
  "denied_by_rule",
  "address_denied",
  "unresolvable",
  "unknown_address",
  "ipv6",
  "budget",
  "rate_limit",
  "dial_failed",
  "bad_request",
]);
export type EgressReason = z.infer<typeof EgressReason>;

export const EgressEvent = z.strictObject({
  world_id: z.string(),
  /** The name the world asked for, or the literal address. */
  name: z.string(),
  /** 0 for DNS. */
  port: z.number().int().min(0).max(65535),
  via: EgressVia,
  decision: EgressDecision,
  reason: EgressReason,
  /** A sentence a user can act on. */
  message: z.string().optional(),
  /** The address dialed (allow) or refused (address_denied). */
  addr: z.string().optional(),
  bytes_up: z.number().int().nonnegative(),
  bytes_down: z.number().int().nonnegative(),
  duration_ms: z.number().nonnegative(),
  /** The command's span (the execute span) when the connection could be attributed. */
  command_span_id: z.string().optional(),
  /** The process that connected (host view), when found. */
  pid: z.number().int().positive().optional(),
  exe: z.string().optional(),
  policy_id: z.string().optional(),
});
export type EgressEvent = z.infer<typeof EgressEvent>;

/** One blocked destination, as `substrate -c` prints it at the end of a command. */
export const EgressBlocked = z.strictObject({
  name: z.string(),
  port: z.number().int().min(0).max(65535),
  reason: EgressReason,
  policy_id: z.string().optional(),
  message: z.string(),
});
export type EgressBlocked = z.infer<typeof EgressBlocked>;

/** Execute result extension: the command's egress through the gateway. */
export const EgressSummary = z.strictObject({
  bytes_up: z.number().int().nonnegative(),
  bytes_down: z.number().int().nonnegative(),
  connections: z.number().int().nonnegative(),
  /** De-duplicated by name:port, first 20. */
  blocked: z.array(EgressBlocked),
});
export type EgressSummary = z.infer<typeof EgressSummary>;

/** The policy's egress settings as the world spec carries them (live: applied at each execute). */
export const EgressSpec = z.strictObject({
  policy_id: z.string().optional(),
  /** net.egress_budget.total_bytes: per command, both directions. */
  total_bytes: z.number().int().nonnegative().optional(),
  /** net.egress_budget.bytes_per_sec: per command; paced, not cut. */
  bytes_per_sec: z.number().int().positive().optional(),
});
export type EgressSpec = z.infer<typeof EgressSpec>;

// The one blocked-egress line: zod-free (egress-line.ts), so the CLI's fast path can print it.
export { blockedEgressLine } from "./egress-line.ts";

/**
 * The grammar of one `net.allowed` entry (semantics: agent/egress/rules.ts, docs/POLICY.md):
 * `[!]HOST[:PORTS]`, HOST = `name` | `*.name` | `*` | IPv4 address | IPv4 CIDR, PORTS = `N`,
 * `N-M`, comma-separated, or `*`. Returns what is wrong, or null. The world spec checks every
 * entry with it (a 400 naming the entry), so the gateway never sees a malformed rule.
 */
export function netEntryProblem(raw: string): string | null {
  let s = raw.trim();
  if (s.startsWith("!")) s = s.slice(1).trim();
  const i = s.lastIndexOf(":");
  const host = i === -1 ? s : s.slice(0, i);
  const ports = i === -1 ? undefined : s.slice(i + 1);
  const usage = `use "example.com", "*.example.com", "10.0.0.0/8", optionally with ":443", ":8000-8100" or ":*", or "!…" to deny`;
  if (ports !== undefined && ports !== "*") {
    for (const part of ports.split(",")) {
      const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(part);
      const a = m ? Number(m[1]) : NaN;
      const b = m?.[2] !== undefined ? Number(m[2]) : a;
      if (!m || a < 1 || b > 65535 || a > b) return `net.allowed entry ${JSON.stringify(raw)}: ${JSON.stringify(part)} is not a port (1-65535), a range (8000-8100) or *`;
    }
  }
  if (host === "*") return null;
  const octet = "(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
  if (new RegExp(`^${octet}(\\.${octet}){3}(/(3[0-2]|[12]?\\d))?$`).test(host)) return null;
  const name = (host.startsWith("*.") ? host.slice(2) : host).toLowerCase().replace(/\.$/, "");
  const label = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;
  if (name.length === 0 || name.length > 253 || !name.split(".").every((l) => label.test(l))) return `net.allowed entry ${JSON.stringify(raw)} is not a host: ${usage}`;
  return null;
}
