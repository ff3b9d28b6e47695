/**
 * `/v1/stream` through the host proxy: the client's WebSocket is bridged frame by frame to
 * one WebSocket to the world agent (binary stays binary, text stays text, nothing is
 * re-encoded). The proxy reads only the first control message: a valid `start` passes its
 * rate limit and budget here first (429 → `error` frame + close 4429, exactly as the agent
 * would answer); everything else is the agent's business, so answers stay identical.
 */
import { wsUrl } from "../api/address.ts";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocket, WebSocketServer, type RawData } from "ws";
import { errorBody, httpStatusFor, StreamStart } from "../contract/index.ts";
import { ApiError } from "../api/service.ts";
import type { BudgetLease } from "../api/budget.ts";
import type { ForwardingService } from "./forward.ts";
import type { BoundAgent } from "./agents.ts";
import { SendWindow } from "../api/flow.ts"; // issue 18.4: back-pressure

export interface StreamBridgeOptions {
  agentSocket: string;
  svc: ForwardingService;
  /** null = allowed; else the refusal (already audited by the caller). */
  authorize(req: IncomingMessage): { status: number; body: string } | null;
  audit(req: IncomingMessage, status: number, agentId: string | null, error: string | null, traceparent: string | null): void;
  traceparent(incoming: string | undefined): string;
  /** RELIABILITY (issue 14.6): the agent this upgrade's agent token binds it to. */
  boundOf?(req: IncomingMessage): BoundAgent | null;
}

const rawLength = (d: RawData): number => (Array.isArray(d) ? d.reduce((n, b) => n + b.length, 0) : (d as Buffer | ArrayBuffer).byteLength);

const closeCode = (c: number): number => (c === 1005 || c === 1006 || c === 1015 ? 1000 : c);

function httpReply(socket: Duplex, status: number, reason: string, body: string): void {
  socket.end(`HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

export function streamBridge(o: StreamBridgeOptions): { onUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void; close(): void } {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 8 * 1024 * 1024 });
  const live = new Set<WebSocket>();

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on("error", () => {});
    const tp = o.traceparent(req.headers.traceparent as string | undefined);
    let path = "";
    try {
      path = new URL(req.url ?? "/", "http://localhost").pathname;
    } catch {}
    const denied = o.authorize(req);
    if (denied) {
      httpReply(socket, denied.status, "Forbidden", denied.body);
      o.audit(req, denied.status, null, "denied", tp);
      return;
    }
    if (path !== "/v1/stream") {
      httpReply(socket, 404, "Not Found", JSON.stringify(errorBody("not_found", `no WebSocket route ${path || req.url}`, "the stream lives at /v1/stream")));
      o.audit(req, 404, null, "not_found", tp);
      return;
    }
    wss.handleUpgrade(req, socket, head, (client) => bridge(client, req, tp));
  };

  function bridge(client: WebSocket, req: IncomingMessage, tp: string): void {
    live.add(client);
    client.on("error", () => {});
    const pending: { data: Buffer; binary: boolean }[] = [];
    let upstream: WebSocket | undefined;
    const flow = new SendWindow(); // issue 18.4: bytes in flight to the client
    let first = true;
    let lease: BudgetLease | undefined;
    let agentId: string | null = null;
    let gating: Promise<boolean> | undefined;
    const t0 = performance.now();
    // Same deadline as the agent's, so a silent client gets the same answer here.
    const silent = setTimeout(() => {
      if (first) refuse(new ApiError("bad_request", "no start or attach message within 10000 ms"));
    }, 10_000);

    const refuse = (e: ApiError) => {
      if (client.readyState === client.OPEN) client.send(JSON.stringify({ type: "error", ...errorBody(e.code, e.message, e.hint).error }));
      client.close(4000 + httpStatusFor(e.code), e.code);
    };
    const openUpstream = () => {
      upstream = new WebSocket(wsUrl(o.agentSocket, "/v1/stream"), { headers: { traceparent: tp }, maxPayload: 8 * 1024 * 1024 });
      upstream.on("open", () => {
        for (const p of pending.splice(0)) upstream!.send(p.data, { binary: p.binary });
      });
      // Issue 18.4 (back-pressure, BACKPRESSURE): while the client lags, the agent's socket is
      // not read (the agent then pauses the command in turn).
      flow.bind({ pause: () => upstream?.pause(), resume: () => upstream?.resume() });
      upstream.on("message", (d: RawData, binary: boolean) => {
        if (client.readyState === client.OPEN) client.send(d as Buffer, { binary }, flow.track(rawLength(d)));
      });
      upstream.on("close", (code: number, reason: Buffer) => {
        lease?.settle(performance.now() - t0);
        if (client.readyState === client.OPEN || client.readyState === client.CONNECTING) client.close(closeCode(code), reason);
      });
      upstream.on("error", (e: Error) => {
        if (upstream!.readyState !== WebSocket.OPEN && client.readyState === client.OPEN)
          refuse(new ApiError("unavailable", `world agent unreachable at ${o.agentSocket}: ${e.message}`, "run `substrate world doctor`"));
      });
    };

    client.on("message", (d: RawData, binary: boolean) => {
      let data = Array.isArray(d) ? Buffer.concat(d) : Buffer.from(d as ArrayBuffer);
      if (first) {
        first = false;
        clearTimeout(silent);
        if (!binary) {
          let msg: unknown;
          try {
            msg = JSON.parse(data.toString("utf8"));
          } catch {}
          const st = StreamStart.safeParse(msg);
          if (st.success) {
            agentId = st.data.agent_id;
            const refused = (e: unknown) => {
              const err = e instanceof ApiError ? e : new ApiError("internal", (e as Error).message);
              refuse(err);
              o.audit(req, httpStatusFor(err.code), agentId, err.code, tp);
            };
            // RELIABILITY (14.6): a client bound to one agent by its token cannot start as another
            let bind: { budget?: typeof st.data.budget; principal?: string };
            try {
              bind = o.svc.bindAgent(st.data.agent_id, st.data.budget, o.boundOf?.(req));
            } catch (e) {
              refused(e);
              return;
            }
            if (o.svc.hasPolicy) {
              // The policy decides before anything is forwarded; input waits meanwhile.
              gating = o.svc.gate(st.data).then(
                (gated) => {
                  if (gated.isolated) {
                    refused(new ApiError("unsupported", "the policy runs this command in an isolated world, which streams do not offer", "use POST /v1/execute (isolated) instead"));
                    return false;
                  }
                  try {
                    // RELIABILITY (14.6): the token's agent and budget; forwarded so the agent enforces it too
                    const b = o.svc.bindAgent(st.data.agent_id, st.data.budget, o.boundOf?.(req));
                    // forward the start with the world the policy gives (src/run/plan.ts), not the caller's
                    if (pending[0]) pending[0] = { data: Buffer.from(JSON.stringify({ ...(msg as object), ...(gated.world ? { world: gated.world } : {}), ...(b.budget ? { budget: b.budget } : {}) })), binary: false };
                    lease = o.svc.admit(st.data.agent_id, st.data.cmd ?? st.data.argv!.join(" "), b.budget, b.principal);
                  } catch (e) {
                    refused(e);
                    return false;
                  }
                  return true;
                },
                (e) => {
                  refused(e);
                  return false;
                },
              );
              pending.push({ data, binary });
              void gating.then((ok) => {
                if (!ok) return;
                o.audit(req, 101, agentId, null, tp);
                openUpstream();
              });
              return;
            }
            try {
              lease = o.svc.admit(st.data.agent_id, st.data.cmd ?? st.data.argv!.join(" "), bind.budget, bind.principal);
            } catch (e) {
              refused(e);
              return;
            }
            if (bind.budget) data = Buffer.from(JSON.stringify({ ...(msg as object), budget: bind.budget }));
          } else if ((msg as { agent_id?: unknown } | null)?.agent_id && typeof (msg as { agent_id: unknown }).agent_id === "string") {
            agentId = (msg as { agent_id: string }).agent_id;
            try {
              o.svc.bindAgent(agentId, undefined, o.boundOf?.(req)); // RELIABILITY (14.6): attach as its own agent only
            } catch (e) {
              const err = e as ApiError;
              refuse(err);
              o.audit(req, httpStatusFor(err.code), agentId, err.code, tp);
              return;
            }
          }
        }
        o.audit(req, 101, agentId, null, tp);
        openUpstream();
      }
      if (upstream?.readyState === WebSocket.OPEN) upstream.send(data, { binary });
      else if (upstream || gating) pending.push({ data, binary });
    });
    client.on("close", (code: number, reason: Buffer) => {
      clearTimeout(silent);
      flow.reset(); // issue 18.4: nobody to wait for
      live.delete(client);
      if (!upstream) return;
      if (upstream.readyState === WebSocket.OPEN) upstream.close(closeCode(code), reason);
      else upstream.terminate();
    });
  }

  return {
    onUpgrade,
    close: () => {
      for (const c of live) c.terminate();
      wss.close();
    },
  };
}
