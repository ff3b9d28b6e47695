/**
 * Issue 18.5: the approver channel. Approvals come from the human, never from the client that
 * asked: the API socket (agent and host proxy) answers `POST /v1/request_scopes/approve` with
 * 403 `forbidden`, and pending approvals are listed and answered only here, on a socket of
 * its own beside the API socket (`/run/substrate.sock` → `/run/substrate-approve.sock`;
 * the proxy's `~/.substrate/sock/agent.sock` → `…/agent-approve.sock`), by `substrate approve`
 * (src/cli/approve.ts), which asks on the terminal before it answers.
 *
 * Who may use it (checked per connection, by the kernel's word):
 * - the peer's SO_PEERCRED uid sees and answers only approvals asked by that uid (root: all);
 *   another uid's approval is "not found", never "forbidden" (its existence stays private);
 * - the peer must run on the host's root filesystem: a process inside a world (or any other
 *   chroot / container root) is refused, even when the socket's path is visible to it (the
 *   proxy's lives under the caller's home, which worlds show read-only — and a Unix socket on
 *   a read-only mount still accepts connections). "Where it runs" is `/proc/<pid>/root`
 *   compared with our `/` (device + inode); a peer whose root we cannot read is refused.
 *
 * Residual risk (docs/SECURITY.md "Approvals"): a process of the same uid on the host itself
 * (not in a world) can use this socket like the human can; the channel separates the asking
 * API client, worlds and other users from the approver, not two processes of one user.
 */
import { chmodSync, chownSync, mkdirSync, statSync, unlinkSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer, type Socket } from "node:net";
import { basename, dirname, join } from "node:path";
import { ApprovalChoice, type ApprovalChoice as Choice } from "../contract/policy.ts";
import { ApproverResult, PendingApprovals, type PendingApproval } from "../contract/approver.ts";
import { errorBody, httpStatusFor } from "../contract/common.ts";
import { peerCred, type PeerCred } from "../sys/peercred.ts";
import { clearStaleSocket } from "../sys/unix-socket.ts";
import { ApiError } from "./service.ts";

/** The approver socket that belongs to an API socket: `<dir>/<name>-approve.sock`. */
export function approveSocketFor(apiSocket: string): string {
  return join(dirname(apiSocket), `${basename(apiSocket).replace(/\.sock$/, "")}-approve.sock`);
}

/** Where approvals come from: the agent's scope registry, the proxy's policy approvals. */
export interface ApproverSource {
  /** Pending approvals asked by `uid` (uid 0: every uid's). */
  list(uid: number): PendingApproval[];
  /** Answer one, as `uid`; null when it has no such pending approval for that uid. Throws ApiError. */
  answer(approvalId: string, choice: Choice, uid: number): ApproverResult | null;
}

export interface ApproverOptions {
  path: string;
  sources: ApproverSource[];
  /** socket file mode (agent: 0660 like its API socket; proxy: 0600) */
  mode: number;
  /** group given the socket (the agent: "substrate"), when it exists and we are root */
  gid?: number | null;
  log?: (msg: string) => void;
}

export interface RunningApprover {
  path: string;
  close(): Promise<void>;
}

export class ApproverListenError extends Error {
  override name = "ApproverListenError";
}

/** Is `pid` on our root filesystem (not inside a world / chroot)? null = yes, else why not. */
export function outsideHostRoot(pid: number): string | null {
  if (!(pid > 0)) return "the peer's pid is unknown";
  try {
    const ours = statSync("/");
    const theirs = statSync(`/proc/${pid}/root/`);
    if (ours.dev === theirs.dev && ours.ino === theirs.ino) return null;
    return `pid ${pid} runs under another root directory (a world, chroot or container); approvals come from the host`;
  } catch (e) {
    return `cannot tell where pid ${pid} runs (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`;
  }
}

const PEER = Symbol("approver.peer");
type Tagged = Socket & { [PEER]?: PeerCred | { refused: string } };

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}
const fail = (res: ServerResponse, e: ApiError) =>
  send(res, httpStatusFor(e.code), errorBody(e.code, e.message, e.hint));

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > 64 * 1024) throw new ApiError("payload_too_large", "the answer is larger than 64 KiB");
    chunks.push(c as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError("bad_request", 'expected a JSON body {"choice":"once|session|always|deny"}');
  }
}

export async function serveApprover(o: ApproverOptions): Promise<RunningApprover> {
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const who = (req.socket as Tagged)[PEER];
    if (!who || "refused" in who) throw new ApiError("forbidden", who && "refused" in who ? who.refused : "unknown peer", "run `substrate approve` in a terminal on the host");
    const url = new URL(req.url ?? "/", "http://localhost");
    if (req.method === "GET" && url.pathname === "/v1/approvals") {
      const approvals = o.sources.flatMap((s) => s.list(who.uid)).sort((a, b) => a.requested_at.localeCompare(b.requested_at));
      return send(res, 200, PendingApprovals.parse({ approvals }));
    }
    const m = /^\/v1\/approvals\/(apr_[0-9a-f-]{36})$/.exec(url.pathname);
    if (m && req.method === "POST") {
      const body = (await readBody(req)) as { choice?: unknown } | null;
      const choice = ApprovalChoice.safeParse(body?.choice);
      if (!choice.success) throw new ApiError("bad_request", "choice must be one of once, session, always, deny");
      for (const s of o.sources) {
        const r = s.answer(m[1]!, choice.data, who.uid);
        if (r) return send(res, 200, ApproverResult.parse(r));
      }
      throw new ApiError("not_found", `no pending approval ${m[1]}`, "it was answered already, expired, or the agent restarted (`substrate approve` lists what is pending)");
    }
    throw new ApiError("not_found", `no route ${req.method} ${url.pathname} on the approver socket`, "GET /v1/approvals, POST /v1/approvals/<id> {choice}");
  };

  const http = createHttpServer((req, res) => {
    handle(req, res).catch((e) => fail(res, e instanceof ApiError ? e : new ApiError("internal", `internal error: ${(e as Error).message}`)));
  });
  http.headersTimeout = 15_000;
  http.requestTimeout = 30_000;
  const net = createServer((s: Tagged) => {
    try {
      const cred = peerCred(s);
      if (!cred) s[PEER] = { refused: "cannot read the peer credentials of this connection" };
      else {
        const outside = outsideHostRoot(cred.pid);
        s[PEER] = outside ? { refused: outside } : cred;
      }
    } catch (e) {
      s[PEER] = { refused: `cannot read the peer credentials: ${(e as Error).message}` };
    }
    http.emit("connection", s);
  });
  mkdirSync(dirname(o.path), { recursive: true });
  await clearStaleSocket(o.path, (_p, message) => new ApproverListenError(message));
  await new Promise<void>((resolve, reject) => {
    net.once("error", (e) => reject(new ApproverListenError(`cannot listen on ${o.path}: ${e.message}`)));
    const old = process.umask(0o177); // no window in which the socket is open to others
    net.listen(o.path, () => resolve());
    process.umask(old);
  });
  if (o.gid !== undefined && o.gid !== null && process.getuid?.() === 0) chownSync(o.path, 0, o.gid);
  chmodSync(o.path, o.mode);
  return {
    path: o.path,
    close: () =>
      new Promise<void>((resolve) => {
        net.close(() => resolve());
        http.closeAllConnections?.();
        try {
          unlinkSync(o.path);
        } catch {}
      }),
  };
}

/** The human's side (`substrate approve`): list and answer on one approver socket. */
export class ApproverClient {
  constructor(readonly socketPath: string) {}

  private async call(method: string, path: string, body?: unknown): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(`http://localhost${path}`, {
        method,
        unix: this.socketPath,
        headers: body !== undefined ? { "content-type": "application/json" } : {},
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(15_000),
      } as RequestInit);
    } catch (e) {
      throw new ApiError("unavailable", `approver socket ${this.socketPath} unreachable: ${(e as Error).message}`);
    }
    const text = await res.text();
    let data: { error?: { code?: string; message?: string; hint?: string } } | null = null;
    try {
      data = JSON.parse(text);
    } catch {}
    if (!res.ok) {
      const err = data?.error;
      throw new ApiError((err?.code as never) ?? "internal", err?.message ?? `approver answered ${res.status}`, err?.hint);
    }
    return data;
  }

  async list(): Promise<PendingApproval[]> {
    return PendingApprovals.parse(await this.call("GET", "/v1/approvals")).approvals;
  }

  async answer(approvalId: string, choice: Choice): Promise<ApproverResult> {
    return ApproverResult.parse(await this.call("POST", `/v1/approvals/${encodeURIComponent(approvalId)}`, { choice }));
  }
}
