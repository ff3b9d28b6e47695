/**
 * Scope tokens (spec section 4: "Pass scope tokens via sealed FD, not env strings").
 *
 * Two halves:
 * 1. `ScopeRegistry` (agent process): which scopes each (uid, agent) holds, and the approval
 *    flow of `POST /v1/request_scopes` — answered only on the approver channel (issue 18.5,
 *    agent/approver.ts; never on the API socket, where the asking client lives), using the
 *    broker's ApprovalRequest contract from src/contract/policy.ts.
 * 2. `sealedScopeFd` (in-world spawner): puts the token into a `memfd_create` file, applies
 *    every seal (F_SEAL_SEAL|SHRINK|GROW|WRITE) and hands it to the command as fd 3.
 *
 * Why the spawner creates the memfd (not the agent): commands are forked by the spawner
 * inside the world's PID namespace, not by the agent, and an fd cannot travel in our JSON
 * ctl request. The agent puts the token text into `CtlExecRequest.scope_token` — carried over
 * the world's private control socket (in a 0700 state dir), never in any process's
 * environment — and the spawner, right before Bun.spawn, builds the sealed memfd and passes
 * it as an extra stdio entry (`stdio: [in, out, err, fd]`; Bun dup2()s it to fd 3 of the
 * child, which clears FD_CLOEXEC there only). The command gets `SUBSTRATE_SCOPE_FD=3`. The
 * spawner closes its own copy as soon as spawn returned ("closed after exec"): the command's
 * fd 3 is then the only reference, and the token dies with the command.
 *
 * Trap: F_SEAL_WRITE fails with EBUSY while a writable shared mapping exists; we never map
 * the file, we write() it. The fd is rewound (lseek 0) so `cat <&3` reads the whole token.
 */
import { closeSync, writeSync } from "node:fs";
import {
  type ApprovalRequest,
  type ApprovalAnswer,
  type ScopeToken,
} from "../src/contract/index.ts";
import type { PendingApproval } from "../src/contract/approver.ts";
import { ApiError } from "../src/api/service.ts";
import { check, cstr, NR, ptrOf, sys } from "../src/sys/libc.ts";

const MFD_CLOEXEC = 0x1n;
const MFD_ALLOW_SEALING = 0x2n;
const F_ADD_SEALS = 1033n;
const F_GET_SEALS = 1034n;
export const F_SEAL = { SEAL: 0x1, SHRINK: 0x2, GROW: 0x4, WRITE: 0x8 } as const;
export const ALL_SEALS = F_SEAL.SEAL | F_SEAL.SHRINK | F_SEAL.GROW | F_SEAL.WRITE;

/** The fd number the command finds its token on. */
export const SCOPE_FD = 3;

/** A memfd holding `content`, every seal applied, rewound. The caller closes it. */
export function sealedScopeFd(content: string): number {
  const name = cstr("substrate-scope");
  const fd = check("memfd_create", sys(NR.memfd_create, BigInt(ptrOf(name)), MFD_CLOEXEC | MFD_ALLOW_SEALING));
  try {
    const buf = Buffer.from(content, "utf8");
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    check("fcntl F_ADD_SEALS", sys(NR.fcntl, BigInt(fd), F_ADD_SEALS, BigInt(ALL_SEALS)));
    check("lseek", sys(NR.lseek, BigInt(fd), 0n, 0n));
    return fd;
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/** The seals on an fd (tests, doctor). */
export function sealsOf(fd: number): number {
  return check("fcntl F_GET_SEALS", sys(NR.fcntl, BigInt(fd), F_GET_SEALS));
}

interface Pending {
  agentId: string;
  /** the uid whose client asked (issue 18.5: only that uid, or root, may answer) */
  uid: number;
  scopes: string[];
  reason?: string;
  requestedAt: string;
  request: ApprovalRequest;
}

/** The 409 answer of request_scopes: who must approve what. */
export class ScopeApprovalRequired extends ApiError {
  override name = "ScopeApprovalRequired";
  constructor(
    readonly approval: ApprovalRequest,
    agentId: string,
    scopes: string[],
  ) {
    super(
      "approval_required",
      `agent ${agentId} asks for scopes that need approval: ${scopes.join(", ")}`,
      `a person approves it at a terminal: \`substrate approve ${approval.approval_id}\` (the API socket cannot approve), then request the scopes again`,
      { approval },
    );
  }
}

export const SCOPES_POLICY_ID = "api-scopes";

/** Pending approvals are dropped after this long unanswered. */
const PENDING_TTL_MS = 15 * 60 * 1000;

/**
 * Grants and pending requests, keyed by (caller uid, agent_id) — issue 18.5/14.6: two users
 * who name their agents alike never share scopes; the agent's own calls (no peer) are its uid.
 */
export class ScopeRegistry {
  /** scopes held until the agent process exits (`session`/`always` answers) */
  private held = new Map<string, Set<string>>();
  /** scopes for the next command only (`once` answers) */
  private once = new Map<string, Set<string>>();
  private pending = new Map<string, Pending>();

  private static key(uid: number, agentId: string): string {
    return `${uid}\u0000${agentId}`;
  }

  holds(agentId: string, uid = selfUid()): string[] {
    const k = ScopeRegistry.key(uid, agentId);
    return [...new Set([...(this.held.get(k) ?? []), ...(this.once.get(k) ?? [])])].sort();
  }

  /** Grant or ask: throws ScopeApprovalRequired (409) unless everything is already held. */
  request(agentId: string, scopes: string[], reason?: string, uid = selfUid()): { granted: string[]; scopes: string[] } {
    const have = new Set(this.holds(agentId, uid));
    const missing = [...new Set(scopes)].filter((s) => !have.has(s)).sort();
    if (missing.length === 0) return { granted: [...new Set(scopes)].sort(), scopes: this.holds(agentId, uid) };
    this.prune();
    const approvalId = `apr_${Bun.randomUUIDv7()}`;
    const command = `request_scopes ${missing.join(" ")}`;
    const request: ApprovalRequest = {
      approval_id: approvalId,
      policy_id: SCOPES_POLICY_ID,
      command,
      cwd: "/",
      reason: reason ? `agent ${agentId}: ${reason}` : `agent ${agentId} requests scopes`,
      pattern: null,
      key: { policy_id: SCOPES_POLICY_ID, cwd_prefix: "/", command_pattern: `agent ${agentId} ${missing.join(" ")}` },
      choices: ["once", "session", "always", "deny"],
    };
    this.pending.set(approvalId, { agentId, uid, scopes: missing, reason, request, requestedAt: new Date().toISOString() });
    // Unanswered approvals do not pile up forever.
    if (this.pending.size > 1000) this.pending.delete(this.pending.keys().next().value!);
    throw new ScopeApprovalRequired(request, agentId, missing);
  }

  /** Pending approvals asked by `uid` (root: all) — the approver channel's list. */
  list(uid: number): PendingApproval[] {
    this.prune();
    return [...this.pending.values()]
      .filter((p) => uid === 0 || p.uid === uid)
      .map((p) => ({
        approval_id: p.request.approval_id,
        kind: "scopes" as const,
        uid: p.uid,
        agent_id: p.agentId,
        command: p.request.command,
        cwd: p.request.cwd,
        reason: p.request.reason,
        scopes: p.scopes,
        policy_id: SCOPES_POLICY_ID,
        choices: p.request.choices,
        requested_at: p.requestedAt,
      }));
  }

  /**
   * Answer an approval as `uid` (the approver channel only; root may answer any). null when
   * there is no such pending approval for that uid. Grants (once: next command only) or denies.
   */
  answer(a: ApprovalAnswer, uid: number): { agent_id: string; granted: string[]; scopes: string[] } | null {
    this.prune();
    const p = this.pending.get(a.approval_id);
    if (!p || (uid !== 0 && p.uid !== uid)) return null;
    this.pending.delete(a.approval_id);
    if (a.choice === "deny") return { agent_id: p.agentId, granted: [], scopes: this.holds(p.agentId, p.uid) };
    const target = a.choice === "once" ? this.once : this.held;
    const k = ScopeRegistry.key(p.uid, p.agentId);
    const set = target.get(k) ?? new Set<string>();
    for (const s of p.scopes) set.add(s);
    target.set(k, set);
    return { agent_id: p.agentId, granted: p.scopes, scopes: this.holds(p.agentId, p.uid) };
  }

  /** The token for one command; consumes `once` grants. */
  tokenFor(agentId: string, spanId: string, worldId: string, uid = selfUid()): ScopeToken {
    const scopes = this.holds(agentId, uid);
    this.once.delete(ScopeRegistry.key(uid, agentId));
    return {
      token: `sct_${Bun.randomUUIDv7()}`,
      agent_id: agentId,
      span_id: spanId,
      world_id: worldId,
      scopes,
      issued_at: new Date().toISOString(),
    };
  }

  private prune(): void {
    const now = Date.now();
    for (const [id, p] of this.pending) if (now - Date.parse(p.requestedAt) > PENDING_TTL_MS) this.pending.delete(id);
  }
}

const selfUid = (): number => process.getuid?.() ?? 0;
