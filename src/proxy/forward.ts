/**
 * The host proxy's AgentService: every call is forwarded to the world agent's socket, after
 * the proxy's own per-agent rate limit and budget (spec: "Budgets are enforced in both
 * host-proxy (middleware) and world-agent (execution)"). Responses are passed through as
 * the agent sent them (not re-serialised), and agent errors are re-raised with the same
 * code, message, hint and extra fields, so `buildRouter` renders the very same body — the
 * parity test checks exactly that.
 */
import { httpTarget } from "../api/address.ts";
import { ndjsonLines } from "../api/ndjson.ts";
import { AsyncLocalStorage } from "node:async_hooks";
import {
  newSpanId,
  newSessionId,
  type BudgetStatus,
  type Capabilities,
  type ErrorCode,
  type ExecuteRequest,
  type ExecuteResponse,
  type ExecuteStreamFrame,
  type RequestScopesRequest,
  type RequestScopesResponse,
  type Span,
  type WorldDoctorReportV1,
  type WorldSpecInput,
} from "../contract/index.ts";
import { ApiError, type AgentService, type OutputSink, type WorldInfo } from "../api/service.ts";
import { BudgetTracker, type BudgetLease } from "../api/budget.ts";
import { appendSpan } from "../trace/index.ts";
import { RateLimiter } from "./ratelimit.ts";
import type { ApiApprovals, PolicyBroker } from "../broker/index.ts";
import { AgentTokens, type BoundAgent } from "./agents.ts";

/**
 * The policy broker in the proxy's hot path (issue 4's ApiApprovals, mounted here): an
 * execute or stream start whose command the policy denies → 403 `denied`; one that needs a
 * human → 409 `approval_required` (+ `approval`), answered by the human on the proxy's approver
 * socket (`substrate approve`, issue 18.5) and then retried; `commands.isolated` → forwarded with `isolated: true`.
 */
export interface ProxyPolicy {
  broker: PolicyBroker;
  approvals: ApiApprovals;
}

/** Per-request facts shared by the middleware (audit, traceparent) and this service. */
export interface RequestContext {
  agentId: string | null;
  traceparent: string;
  /** RELIABILITY (issue 14.6): the agent this request's agent token binds it to (src/proxy/agents.ts). */
  bound?: BoundAgent | null;
}
export const requestContext = new AsyncLocalStorage<RequestContext>();

export interface ForwardOptions {
  /** The world agent's socket (Linux: /run/substrate.sock; macOS: the Lima forward). */
  agentSocket: string;
  budgets?: BudgetTracker;
  limiter?: RateLimiter;
  /** Host trace (rate_limit spans); default traceFilePath(). */
  tracePath?: string;
  log?: (msg: string) => void;
  /** null/undefined: no policy gate (the agent's own semantics only). */
  policy?: ProxyPolicy | null;
  /** RELIABILITY (issue 14.6): agent tokens binding agent_id + budget to the client. */
  agentTokens?: AgentTokens;
}

export class ForwardingService implements AgentService {
  readonly budgets: BudgetTracker;
  readonly limiter: RateLimiter;
  readonly agentTokens: AgentTokens;
  get hasPolicy(): boolean {
    return Boolean(this.o.policy);
  }
  private readonly sessionId = newSessionId(); // the proxy's own spans (rate_limit)

  constructor(private readonly o: ForwardOptions) {
    this.budgets = o.budgets ?? new BudgetTracker();
    this.limiter = o.limiter ?? new RateLimiter();
    this.agentTokens = o.agentTokens ?? new AgentTokens();
  }

  /**
   * RELIABILITY (issue 14.6): the budget and budget key of a request naming `agentId`, from
   * the client's agent token (403 when it names another agent). `bound` defaults to the
   * current request's (HTTP); the stream bridge passes its upgrade request's.
   */
  bindAgent(agentId: string, budget: ExecuteRequest["budget"], bound: BoundAgent | null | undefined = requestContext.getStore()?.bound): { budget?: ExecuteRequest["budget"]; principal?: string } {
    return this.agentTokens.bind(agentId, budget, bound);
  }

  private async fetch(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Response> {
    const ctx = requestContext.getStore();
    try {
      // The agent is a Unix socket, or (Lima's ssh-tcp transport) 127.0.0.1:PORT.
      const target = httpTarget(this.o.agentSocket, path);
      return await fetch(target.url, {
        method,
        ...target.init,
        headers: {
          ...(body !== undefined ? { "content-type": "application/json" } : {}),
          ...(ctx ? { traceparent: ctx.traceparent } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      } as RequestInit);
    } catch (e) {
      if (signal?.aborted) throw e;
      throw new ApiError("unavailable", `world agent unreachable at ${this.o.agentSocket}: ${(e as Error).message}`, "run `substrate world doctor`");
    }
  }

  /** The agent's JSON, as sent; its errors re-raised as the same ApiError. */
  private async call<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const res = await this.fetch(method, path, body, signal);
    const text = await res.text();
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      throw new ApiError("internal", `world agent answered ${res.status} with non-JSON: ${text.slice(0, 200)}`);
    }
    if (!res.ok) throw errorFrom(res.status, data);
    return data as T;
  }

  /** Proxy-side limits for a call that names an agent; 429 + a host `rate_limit` span. */
  admit(agentId: string, cmd: string, budget?: ExecuteRequest["budget"], principal?: string): BudgetLease {
    const ctx = requestContext.getStore();
    if (ctx) ctx.agentId = agentId;
    const span = (reason: string): string => {
      const spanId = newSpanId();
      void appendSpan(
        { ts: new Date().toISOString(), event_type: "rate_limit", session_id: this.sessionId, span_id: spanId, component: "api", agent_id: agentId, cmd, reason },
        this.o.tracePath ? { path: this.o.tracePath } : {},
      ).catch((e) => this.o.log?.(`cannot write rate_limit span: ${(e as Error).message}`));
      return spanId;
    };
    const wait = this.limiter.take(agentId);
    if (wait > 0) {
      const id = span(`rate: more than ${this.limiter.burst} requests in a burst`);
      throw new ApiError("rate_limited", `rate limit for agent ${agentId}: ${this.limiter.ratePerSec} requests/s (burst ${this.limiter.burst})`, `retry in ${Math.ceil(wait)} ms; rate_limit span ${id}`);
    }
    return this.budgets.acquire(agentId, budget, (ex) => {
      const id = span(`${ex.limit}: ${ex.used} of ${ex.max} used`);
      return `rate_limit span ${id} (GET /v1/trace/${id}); budget ${ex.limit} is spent; it resets when the world agent restarts`;
    }, principal);
  }

  private cfg?: import("../contract/config.ts").EffectiveConfig;

  /**
   * The policy gate (the host pipeline's gate with the API asker) and the world (the
   * pipeline's one builder, from the policy in force, never the caller's block as sent):
   * returns the request to forward (maybe isolated) or throws 403/409.
   */
  async gate<T extends { cmd?: string; argv?: string[]; cwd?: string; env?: Record<string, string>; world?: WorldSpecInput }>(req: T): Promise<T & { isolated?: boolean; world?: WorldSpecInput }> {
    const pol = this.o.policy;
    if (!pol) return req;
    const cwd = req.cwd ?? req.world?.project_dir ?? "/";
    let loaded;
    try {
      loaded = pol.broker.current(cwd);
    } catch (e) {
      throw new ApiError("unavailable", `the policy for ${cwd} cannot be loaded: ${(e as Error).message.split("\n")[0]}`, "fix it (`substrate policy validate`)");
    }
    if (!this.cfg) {
      const { effectiveConfig } = await import("../config.ts");
      this.cfg = effectiveConfig({});
    }
    // The one gate with the API asker and the one world builder (src/run/agent-gate.ts, as the
    // agent's own gate): deny → 403, approval → 409, isolated; the caller may only tighten its world.
    const { agentGate } = await import("../run/agent-gate.ts");
    return (await agentGate(req, { loaded, approvals: pol.approvals, cfg: this.cfg })).request;
  }

  async capabilities(): Promise<Capabilities> {
    return this.call("GET", "/v1/capabilities");
  }

  async execute(req: ExecuteRequest, sink?: OutputSink, signal?: AbortSignal): Promise<ExecuteResponse> {
    const bound = this.bindAgent(req.agent_id, req.budget); // before the gate: an impostor leaves no pending approval
    req = await this.gate({ ...req, ...(bound.budget ? { budget: bound.budget } : {}) });
    const lease = this.admit(req.agent_id, req.cmd ?? req.argv!.join(" "), req.budget, bound.principal);
    const t0 = performance.now();
    try {
      if (!sink) return await this.call<ExecuteResponse>("POST", "/v1/execute", { ...req, stream: false }, signal);
      const res = await this.fetch("POST", "/v1/execute", { ...req, stream: true }, signal);
      if (!res.ok || !res.headers.get("content-type")?.includes("ndjson")) {
        const text = await res.text();
        let data: unknown = null;
        try {
          data = JSON.parse(text);
        } catch {}
        throw errorFrom(res.status, data);
      }
      // Issue 18.4 (back-pressure, BACKPRESSURE): while our own client lags (the router pauses
      // us through sink.flow) the agent's response is not read: its socket fills and the agent
      // pauses the command in turn.
      let hold: Promise<void> | undefined;
      let release = () => {};
      sink.flow?.({
        pause: () => void (hold ??= new Promise<void>((r) => (release = r))),
        resume: () => {
          hold = undefined;
          release();
        },
      });
      for await (const raw of ndjsonLines(res.body!)) {
        const f = raw as ExecuteStreamFrame;
        if (f.type === "stdout") sink.stdout(Buffer.from(f.data_b64, "base64"));
        else if (f.type === "stderr") sink.stderr(Buffer.from(f.data_b64, "base64"));
        else if (f.type === "result") return f.result;
        else if (f.type === "error") throw new ApiError(f.error.code as ErrorCode, f.error.message, f.error.hint);
        if (hold) await hold;
      }
      throw new ApiError("unavailable", "the world agent closed the stream before the command finished", "run `substrate world doctor`");
    } finally {
      lease.settle(performance.now() - t0);
    }
  }

  async listWorlds(): Promise<WorldInfo[]> {
    return (await this.call<{ worlds: WorldInfo[] }>("GET", "/v1/worlds")).worlds;
  }

  async deleteWorld(id: string): Promise<boolean> {
    try {
      await this.call("DELETE", `/v1/worlds/${encodeURIComponent(id)}`);
      return true;
    } catch (e) {
      if (e instanceof ApiError && e.code === "not_found") return false;
      throw e;
    }
  }

  async worldDoctor(): Promise<WorldDoctorReportV1> {
    return this.call("GET", "/v1/doctor/world");
  }

  async trace(spanId: string): Promise<Span | undefined> {
    try {
      return await this.call<Span>("GET", `/v1/trace/${encodeURIComponent(spanId)}`);
    } catch (e) {
      // The proxy's own spans (its 429s) live in the host trace.
      if (e instanceof ApiError && e.code === "not_found") {
        const { findSpan } = await import("../trace/index.ts");
        return findSpan(spanId, this.o.tracePath);
      }
      throw e;
    }
  }

  async requestScopes(req: RequestScopesRequest): Promise<RequestScopesResponse> {
    const ctx = requestContext.getStore();
    if (ctx) ctx.agentId = req.agent_id;
    this.bindAgent(req.agent_id, undefined); // RELIABILITY (14.6): a bound client asks for its own agent only
    return this.call("POST", "/v1/request_scopes", req);
  }

  // POST /v1/request_scopes/approve: 403 on every API socket (issue 18.5, src/api/router.ts);
  // the proxy's policy approvals are answered on its approver socket (src/proxy/agents.ts).

  /** The agent's view (final authority); the proxy's own tracker is reported in the audit. */
  async budget(agentId: string): Promise<BudgetStatus | undefined> {
    const { principal } = this.bindAgent(agentId, undefined);
    try {
      return await this.call<BudgetStatus>("GET", `/v1/budgets/${encodeURIComponent(agentId)}`);
    } catch (e) {
      if (e instanceof ApiError && e.code === "not_found") return this.budgets.status(agentId, principal);
      throw e;
    }
  }
}

const CODES = new Set<string>(["forbidden", "bad_request", "not_found", "method_not_allowed", "payload_too_large", "rate_limited", "denied", "approval_required", "unsupported", "unavailable", "internal"]);

/** The agent's error body → the same ApiError (so the proxy renders the same bytes). */
export function errorFrom(status: number, data: unknown): ApiError {
  const d = data as { error?: { code?: unknown; message?: unknown; hint?: unknown } } | null;
  const e = d?.error;
  if (e && typeof e.code === "string" && CODES.has(e.code) && typeof e.message === "string") {
    const { error: _, ...extra } = d as Record<string, unknown>;
    return new ApiError(e.code as ErrorCode, e.message, typeof e.hint === "string" ? e.hint : undefined, Object.keys(extra).length ? extra : undefined);
  }
  return new ApiError("internal", `world agent answered ${status} without an error body`);
}
