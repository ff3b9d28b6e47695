/**
 * Issue 18.5: the world agent's approver channel — the scope approvals of its ScopeRegistry,
 * listed and answered on `<api socket>-approve.sock` (src/api/approver.ts has the socket, the
 * peer checks and the protocol), never on the API socket the asking client uses.
 *
 * The socket gets the API socket's mode and group (0660 root:substrate): whoever may ask may
 * also answer — but only its own uid's approvals, and only from the host (not from a world).
 */
import { approveSocketFor, serveApprover, type ApproverSource, type RunningApprover } from "../src/api/approver.ts";
import type { ScopeRegistry } from "./scopes.ts";

export function scopeApprovals(scopes: ScopeRegistry): ApproverSource {
  return {
    list: (uid) => scopes.list(uid),
    answer: (id, choice, uid) => {
      const r = scopes.answer({ approval_id: id, choice }, uid);
      return r ? { approval_id: id, choice, kind: "scopes", agent_id: r.agent_id, granted: r.granted } : null;
    },
  };
}

export async function startAgentApprover(o: {
  apiSocket: string;
  scopes: ScopeRegistry;
  gid: number | null;
  log: (m: string) => void;
}): Promise<RunningApprover> {
  return serveApprover({ path: approveSocketFor(o.apiSocket), sources: [scopeApprovals(o.scopes)], mode: 0o660, gid: o.gid, log: o.log });
}
