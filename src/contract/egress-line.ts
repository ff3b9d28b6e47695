/**
 * The end-of-command blocked-egress line, zod-free: the CLI's fast path (src/cli/fast.ts)
 * prints it without loading the contract's schemas. src/contract/net.ts re-exports it.
 */
import type { EgressBlocked } from "./net.ts";

/**
 * The one line `substrate -c` prints at the end of a command whose egress was blocked
 * (without the `substrate: ` prefix), e.g.
 *   blocked egress: example.org:443 (not in net.allowed of policy default)
 * A name refused by DNS (port 0) is shown without a port unless the same name was refused on
 * a port too. null when nothing was blocked.
 */
export function blockedEgressLine(blocked: readonly EgressBlocked[]): string | null {
  if (blocked.length === 0) return null;
  const withPort = new Set(blocked.filter((b) => b.port !== 0).map((b) => b.name));
  const items = blocked.filter((b) => b.port !== 0 || !withPort.has(b.name));
  const pol = (b: EgressBlocked) => (b.policy_id ? `policy ${b.policy_id}` : "the policy");
  const why = (b: EgressBlocked): string => {
    switch (b.reason) {
      case "not_allowed":
        return `not in net.allowed of ${pol(b)}`;
      case "denied_by_rule":
        return `denied by net.allowed of ${pol(b)}`;
      case "address_denied":
        return "resolves only to refused addresses";
      case "budget":
      case "rate_limit":
        return `egress_budget of ${pol(b)} spent`;
      case "ipv6":
        return "no IPv6 egress";
      default:
        return b.reason.replaceAll("_", " ");
    }
  };
  const shown = items.slice(0, 3).map((b) => `${b.port ? `${b.name}:${b.port}` : b.name} (${why(b)})`);
  const more = items.length > 3 ? `, and ${items.length - 3} more` : "";
  return `blocked egress: ${shown.join(", ")}${more}`;
}
