/**
 * The `/v1` routes, built once from an AgentService (spec ADR-005: one router for the
 * world agent and the host proxy). Every answer is JSON — errors included, never HTML,
 * never a stack trace: `{error: {code, message, hint?}}` with the matching HTTP status.
 */
import { Hono, type Context, type MiddlewareHandler } from "hono";
import { SPAN_ID_RE } from "../contract/ids.ts";
import { z } from "zod";
import {
  errorBody,
  ExecuteRequest,
  RequestScopesRequest,
  httpStatusFor,
  type ErrorCode,
  type ExecuteStreamFrame,
} from "../contract/index.ts";
import { ApiError, type AgentService, type RequestContext } from "./service.ts";
import { NDJSON_HIGH_WATER } from "./flow.ts"; // issue 18.4: back-pressure

const PEER = Symbol.for("substrate.peer");
/**
 * Issue 13: the peer of the connection this request came on (recorded by the world agent's
 * server at accept time, agent/caller.ts). Absent on the host proxy and in-process.
 */
function contextOf(c: Context): RequestContext {
  const sock = (c.env as { incoming?: { socket?: Record<symbol, RequestContext["peer"]> } } | undefined)?.incoming?.socket;
  const peer = sock?.[PEER];
  return peer ? { peer } : {};
}
import { FsApplyRequest, FsDiffParams } from "../contract/fsdiff.ts";

/** Request bodies above this are refused with 413 before parsing. */
export const MAX_BODY_BYTES = 8 * 1024 * 1024;

export function jsonError(c: Context, code: ErrorCode, message: string, hint?: string): Response {
  return c.json(errorBody(code, message, hint), httpStatusFor(code) as 400);
}

/** Human-readable summary of a zod error: `field.path: problem; ...`. */
export function describeZodError(e: z.ZodError): string {
  return e.issues
    .map((i) => `${i.path.length ? i.path.join(".") : "body"}: ${i.message}`)
    .join("; ");
}

async function readJsonBody(c: Context): Promise<unknown> {
  const len = Number(c.req.header("content-length") ?? "0");
  // Issue 6: a body that stops arriving must not hold the handler (and its fd) forever.
  const deadline = Number(process.env.SUBSTRATE_BODY_DEADLINE_MS) || 30_000;
  if (len > MAX_BODY_BYTES) {
    // Issue 6: read and discard a moderately oversized body first (chunk by chunk, never
    // held): answering mid-upload makes Bun reset the socket and the 413 is lost (measured).
    // Far larger declarations are answered at once.
    if (len <= 4 * MAX_BODY_BYTES && c.req.raw.body) {
      const reader = c.req.raw.body.getReader();
      const drained = (async () => {
        while (!(await reader.read()).done);
      })().catch(() => {});
      let t: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([drained, new Promise<void>((r) => (t = setTimeout(r, deadline)))]);
      clearTimeout(t);
    }
    throw new ApiError("payload_too_large", `request body is ${len} bytes; the limit is ${MAX_BODY_BYTES}`);
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const buf = await Promise.race([
    c.req.arrayBuffer(),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ApiError("bad_request", `request body not received within ${deadline} ms`, "send the whole body with its Content-Length")), deadline);
    }),
  ]).finally(() => clearTimeout(timer));
  if (buf.byteLength > MAX_BODY_BYTES)
    throw new ApiError("payload_too_large", `request body exceeds ${MAX_BODY_BYTES} bytes`);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(buf);
  } catch {
    throw new ApiError("bad_request", "request body is not valid UTF-8");
  }
  if (text.trim() === "") throw new ApiError("bad_request", "request body is empty; expected a JSON object");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ApiError("bad_request", `request body is not valid JSON: ${(e as Error).message}`);
  }
}

export function parseWith<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  const r = schema.safeParse(body);
  if (!r.success) throw new ApiError("bad_request", describeZodError(r.error));
  return r.data;
}

export interface RouterOptions {
  /** Issue 6: middleware run before every route (the host proxy's auth, limits, audit). */
  middleware?: MiddlewareHandler[];
}

export function buildRouter(svc: AgentService, opts: RouterOptions = {}): Hono {
  const app = new Hono();
  for (const m of opts.middleware ?? []) app.use("*", m);

  app.get("/v1/capabilities", async (c) => c.json(await svc.capabilities()));

  app.post("/v1/execute", async (c) => {
    const req = parseWith(ExecuteRequest, await readJsonBody(c));
    const ctx = contextOf(c);
    if (!req.stream) return c.json(await svc.execute(req, undefined, c.req.raw.signal, ctx));

    // NDJSON: output frames as they come, then one `result` (or `error`) frame.
    // Issue 18.4 (back-pressure): the body is pulled by the HTTP response, which stops pulling
    // while the client's socket is full; once NDJSON_HIGH_WATER bytes wait in the stream's queue
    // the command's output is paused (sink.flow, agent/flow.ts) and pull() resumes it.
    const enc = new TextEncoder();
    const abort = new AbortController();
    let producer: { pause(): void; resume(): void } | undefined;
    let paused = false;
    const body = new ReadableStream<Uint8Array>(
      {
        start(ctl) {
          const send = (f: ExecuteStreamFrame) => {
            try {
              ctl.enqueue(enc.encode(`${JSON.stringify(f)}\n`));
            } catch {}
            if (!paused && (ctl.desiredSize ?? 1) <= 0) {
              paused = true;
              producer?.pause();
            }
          };
          const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
          const sink = {
            stdout: (b: Uint8Array) => send({ type: "stdout", data_b64: b64(b) }),
            stderr: (b: Uint8Array) => send({ type: "stderr", data_b64: b64(b) }),
            flow: (p: { pause(): void; resume(): void }) => {
              producer = p;
              if (paused) p.pause();
            },
          };
          svc
            .execute(req, sink, abort.signal, ctx)
            .then((result) => send({ type: "result", result }))
            .catch((e) => {
              const err = e instanceof ApiError ? e : new ApiError("internal", (e as Error).message);
              send({ type: "error", error: { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) } });
            })
            .finally(() => {
              try {
                ctl.close();
              } catch {}
            });
        },
        pull() {
          if (paused) {
            paused = false;
            producer?.resume();
          }
        },
        cancel() {
          abort.abort();
        },
      },
      { highWaterMark: NDJSON_HIGH_WATER, size: (chunk) => chunk?.byteLength ?? 0 },
    );
    return new Response(body, { headers: { "content-type": "application/x-ndjson" } });
  });

  // DS0: the world kernel's own readiness report. A throw becomes 500 + error body (onError
  // below), so a failed collection can never be mistaken for ok=true.
  app.get("/v1/doctor/world", async (c) => {
    if (!svc.worldDoctor) throw new ApiError("unsupported", "this endpoint does not serve /v1/doctor/world");
    return c.json(await svc.worldDoctor());
  });

  // Isolated results (issue 3, contract src/contract/fsdiff.ts): diff by span, apply, discard.
  const spanParam = (c: Context) => parseWith(FsDiffParams, { span_id: c.req.param("span_id") }).span_id;
  const needFs = () => {
    if (!svc.fsDiff || !svc.applyFsDiff || !svc.discardFsDiff) throw new ApiError("unsupported", "this endpoint does not serve /v1/fs_diff");
    return { diff: svc.fsDiff.bind(svc), apply: svc.applyFsDiff.bind(svc), discard: svc.discardFsDiff.bind(svc) };
  };
  app.get("/v1/fs_diff/:span_id", async (c) => c.json(await needFs().diff(spanParam(c), contextOf(c))));
  app.post("/v1/fs_diff/:span_id/apply", async (c) => {
    const fs = needFs();
    const span = spanParam(c);
    // An empty body means "apply everything".
    const text = await c.req.text();
    const body = text.trim() === "" ? {} : parseWith(FsApplyRequest, (() => {
      try {
        return JSON.parse(text);
      } catch (e) {
        throw new ApiError("bad_request", `request body is not valid JSON: ${(e as Error).message}`);
      }
    })());
    return c.json(await fs.apply(span, body.paths, contextOf(c)));
  });
  app.post("/v1/fs_diff/:span_id/discard", async (c) => c.json(await needFs().discard(spanParam(c), contextOf(c))));

  app.get("/v1/worlds", async (c) => c.json({ worlds: await svc.listWorlds(contextOf(c)) }));
  app.delete("/v1/worlds/:id", async (c) => {
    const ok = await svc.deleteWorld(c.req.param("id"), contextOf(c));
    if (!ok) throw new ApiError("not_found", `no world ${c.req.param("id")}`);
    return c.json({ deleted: true });
  });

  // Issue 6 (agent/stream.ts): the WebSocket upgrade is taken before Hono sees the request;
  // a plain GET lands here.
  app.get("/v1/stream", () => {
    throw new ApiError("bad_request", "GET /v1/stream needs a WebSocket upgrade", "connect with a WebSocket client; see docs/API.md#stream");
  });
  app.get("/v1/trace/:span_id", async (c) => {
    if (!svc.trace) throw new ApiError("unsupported", "this endpoint does not serve /v1/trace");
    const id = c.req.param("span_id");
    if (!SPAN_ID_RE.test(id)) throw new ApiError("bad_request", `span id ${JSON.stringify(id.slice(0, 80))} is not spn_<uuidv7>`);
    const span = await svc.trace(id);
    if (!span) throw new ApiError("not_found", `no span ${id} in this trace`, "spans are kept in the trace file of the process that ran the command");
    return c.json(span);
  });
  app.post("/v1/request_scopes", async (c) => {
    if (!svc.requestScopes) throw new ApiError("unsupported", "this endpoint does not serve /v1/request_scopes");
    return c.json(await svc.requestScopes(parseWith(RequestScopesRequest, await readJsonBody(c)), contextOf(c)));
  });
  // Issue 18.5 (RELIABILITY): approvals come from the human, never from the client that asked —
  // and that client is exactly who talks to this socket. They are answered on the approver
  // channel (src/api/approver.ts) by `substrate approve`; here: 403, whatever the body.
  app.post("/v1/request_scopes/approve", () => {
    throw new ApiError(
      "forbidden",
      "approvals cannot be answered on the API socket: the client that asked must not approve itself",
      "a person answers at a terminal on the host: `substrate approve` (lists pending approvals; `substrate approve ID` answers one)",
    );
  });
  app.get("/v1/budgets/:agent_id", async (c) => {
    if (!svc.budget) throw new ApiError("unsupported", "this endpoint does not serve /v1/budgets");
    const id = c.req.param("agent_id");
    const st = await svc.budget(id, contextOf(c));
    if (!st) throw new ApiError("not_found", `agent ${JSON.stringify(id.slice(0, 80))} has no budget`, "send `budget` with an execute to set one");
    return c.json(st);
  });

  app.notFound((c) => jsonError(c, "not_found", `no route ${c.req.method} ${c.req.path}`, "see docs/API.md for the /v1 routes"));
  app.onError((e, c) => {
    if (e instanceof ApiError) {
      if (e.extra) return c.json({ ...errorBody(e.code, e.message, e.hint), ...e.extra }, httpStatusFor(e.code) as 400);
      return jsonError(c, e.code, e.message, e.hint);
    }
    return jsonError(c, "internal", `internal error: ${e.message}`);
  });
  return app;
}

/**
 * Issue 6: answer what the HTTP parser rejects (garbage request lines, bad headers, header
 * timeouts) with the same JSON error body instead of node's empty 400. Register on the
 * http.Server: `http.on("clientError", answerClientError)`.
 */
export function answerClientError(err: Error & { code?: string }, socket: import("node:stream").Duplex): void {
  const tooLarge = err.code === "HPE_HEADER_OVERFLOW";
  const timeout = err.code === "ERR_HTTP_REQUEST_TIMEOUT" || err.code === "HPE_HEADERS_TIMEOUT";
  const body = JSON.stringify(
    errorBody(
      tooLarge ? "payload_too_large" : "bad_request",
      timeout ? "request headers not received in time" : `malformed HTTP request (${err.code ?? err.message})`,
      "send HTTP/1.1 with a JSON body; see docs/API.md",
    ),
  );
  const status = tooLarge ? "431 Request Header Fields Too Large" : timeout ? "408 Request Timeout" : "400 Bad Request";
  try {
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    else socket.destroy();
  } catch {
    socket.destroy();
  }
}
