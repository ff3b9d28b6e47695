/**
 * The approval cache (spec ApprovalCache): "session" and "always" answers keyed by
 * {policy_id, cwd_prefix, command_pattern} and bound to the policy's content hash.
 *
 * - "always" entries persist in ~/.substrate/approvals.json (mode 0600, written atomically:
 *   temp file + rename); an entry stops counting as soon as the policy it was given under
 *   changes (different hash), and is pruned at the next write.
 * - "session" entries belong to $SUBSTRATE_SESSION_ID when the shell set one (then they are in
 *   the same file, so every `substrate -c` of that session sees them), else to this process.
 * - A session that switches policy (another `.substrate-profile`, an edited policy) loses its
 *   session approvals (spec: "resets on profile change").
 */
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { ApprovalsFile, type ApprovalEntry, type ApprovalKey } from "../contract/policy.ts";

const SESSION_TTL_MS = 24 * 3600 * 1000;

export class ApprovalStore {
  /** session entries of this process when there is no session id */
  private memory: ApprovalEntry[] = [];
  private memoryPolicy: { policy_id: string; policy_hash: string } | null = null;
  private warned = false;

  constructor(
    readonly file: string,
    private readonly warn: (msg: string) => void = (m) => process.stderr.write(`substrate: ${m}\n`),
  ) {}

  private read(): ApprovalsFile {
    let text: string;
    try {
      text = readFileSync(this.file, "utf8");
    } catch {
      return { version: 1, entries: [], sessions: {} };
    }
    try {
      const f = ApprovalsFile.parse(JSON.parse(text), { jitless: true });
      // (HOTPATH, issue 17) a file from before markers were dropped (one per `substrate -c`
      // ever run, read and parsed per command): rewritten once, without them (best effort)
      const guarded = new Set(f.entries.map((e) => (e.scope === "session" ? e.session_id : undefined)));
      if (Object.keys(f.sessions).filter((id) => !guarded.has(id)).length > 16) {
        try {
          this.writeOrThrow(structuredClone(f));
        } catch {}
      }
      return f;
    } catch (e) {
      if (!this.warned) this.warn(`ignoring unreadable approval cache ${this.file} (${(e as Error).message.split("\n")[0]}); it will be rewritten`);
      this.warned = true;
      return { version: 1, entries: [], sessions: {} };
    }
  }

  /** Never fails the command: an unwritable cache costs the remembered approvals, with one warning. */
  private write(f: ApprovalsFile): void {
    try {
      this.writeOrThrow(f);
    } catch (e) {
      if (!this.warned) this.warn(`cannot write the approval cache ${this.file}: ${(e as Error).message.split("\n")[0]}`);
      this.warned = true;
    }
  }

  private writeOrThrow(f: ApprovalsFile): void {
    mkdirSync(dirname(this.file), { recursive: true, mode: 0o700 });
    const now = Date.now();
    f.entries = f.entries.filter((e) => e.scope === "always" || now - Date.parse(e.created_at) < SESSION_TTL_MS);
    // (HOTPATH, issue 17) a marker guards a session's approvals; one without any is dropped
    // (noteSession treats a missing marker and no approvals alike), so the file stays small.
    const guarded = new Set(f.entries.map((e) => (e.scope === "session" ? e.session_id : undefined)));
    for (const id of Object.keys(f.sessions)) if (!guarded.has(id)) delete f.sessions[id];
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(f, null, 2)}\n`, { mode: 0o600 });
    chmodSync(tmp, 0o600); // mode above is masked by umask; approvals are private
    renameSync(tmp, this.file);
  }

  /**
   * Tell the store which policy this session uses now. A change of policy (id or hash) clears
   * the session's approvals and drops "always" entries bound to an older version of that policy.
   * Returns true when something was cleared.
   */
  noteSession(sessionId: string | null, policyId: string, policyHash: string): boolean {
    const marker = { policy_id: policyId, policy_hash: policyHash };
    if (sessionId === null) {
      const changed = this.memoryPolicy !== null && (this.memoryPolicy.policy_id !== policyId || this.memoryPolicy.policy_hash !== policyHash);
      this.memoryPolicy = marker;
      if (changed) this.memory = [];
      return changed;
    }
    const f = this.read();
    const prev = f.sessions[sessionId];
    if (prev && prev.policy_id === policyId && prev.policy_hash === policyHash) return false;
    // (HOTPATH, issue 17) A session with no marker and no approvals has nothing to reset: no
    // write (every `substrate -c` is a new session; writing each one's marker made this file —
    // read and rewritten per command — grow without bound). record() sets the marker with the
    // session's first approval, so a later policy change still resets it. An edited policy's
    // old "always" entries are still dropped here (that is a change to write).
    const stale = (e: ApprovalEntry) => (e.scope === "session" && e.session_id === sessionId) || (e.scope === "always" && e.policy_id === policyId && e.policy_hash !== policyHash);
    if (!prev && !f.entries.some(stale)) return false;
    const before = f.entries.length;
    f.entries = f.entries.filter((e) => !stale(e));
    f.sessions[sessionId] = marker;
    this.write(f);
    return prev !== undefined && before !== f.entries.length;
  }

  /** The scope of a cached approval covering `key` under this policy version, or null. */
  lookup(key: ApprovalKey, policyHash: string, sessionId: string | null): "session" | "always" | null {
    const hit = (e: ApprovalEntry): boolean =>
      e.policy_id === key.policy_id &&
      e.policy_hash === policyHash &&
      e.command_pattern === key.command_pattern &&
      (key.cwd_prefix === e.cwd_prefix || e.cwd_prefix === "/" || key.cwd_prefix.startsWith(`${e.cwd_prefix}/`));
    const f = this.read();
    if (f.entries.some((e) => e.scope === "always" && hit(e))) return "always";
    if (sessionId === null) return this.memory.some(hit) ? "session" : null;
    return f.entries.some((e) => e.scope === "session" && e.session_id === sessionId && hit(e)) ? "session" : null;
  }

  record(key: ApprovalKey, policyHash: string, scope: "session" | "always", sessionId: string | null): void {
    const entry: ApprovalEntry = { ...key, policy_hash: policyHash, scope, created_at: new Date().toISOString() };
    if (scope === "session" && sessionId === null) {
      this.memory.push(entry);
      return;
    }
    const f = this.read();
    f.entries.push(scope === "session" ? { ...entry, session_id: sessionId! } : entry);
    // the session's policy marker, with its first approval (noteSession writes no marker before)
    if (scope === "session" && !f.sessions[sessionId!]) f.sessions[sessionId!] = { policy_id: key.policy_id, policy_hash: policyHash };
    this.write(f);
  }

  /** All entries currently on disk (for `policy show` and tests). */
  entries(): ApprovalEntry[] {
    return this.read().entries;
  }
}
