/**
 * The agent API as an interface. The world agent implements it against real worlds; the
 * host proxy implements it by forwarding. `buildRouter` turns any implementation into the
 * same `/v1` HTTP surface, so both sockets answer identically.
 */
import type {
  BudgetStatus,
  Capabilities,
  ErrorCode,
  ExecuteRequest,
  ExecuteResponse,
  RequestScopesRequest,
  RequestScopesResponse,
  Span,
  WorldDoctorReportV1,
} from "../contract/index.ts";
import { z } from "zod";
import { FsIsolation, FsMode, ResourceLimits } from "../contract/world.ts";
import type { FsApplyResponse, FsDiscardResponse } from "../contract/fsdiff.ts";
import type { FsDiff } from "../contract/world.ts";

export interface OutputSink {
  stdout(b: Uint8Array): void;
  stderr(b: Uint8Array): void;
  /**
   * Issue 18.4 (back-pressure, agent/flow.ts): called once the command runs, with the handle
   * that stops (`pause`) and restarts (`resume`) its output — the sink pauses it while its own
   * reader lags (the NDJSON response, src/api/router.ts). Optional on both sides.
   */
  flow?(producer: { pause(): void; resume(): void }): void;
}

export const WorldInfo = z.strictObject({
  id: z.string(),
  project_dir: z.string(),
  isolated: z.boolean(),
  isolate_network: z.boolean(),
  created_at: z.string(),
  age_ms: z.number().int().nonnegative(),
  execs: z.number().int().nonnegative(),
  /** The world's limits as requested (the cgroup adds headroom for Substrate's own tasks). */
  limits: ResourceLimits.optional(),
  fs_mode: FsMode.optional(),
  fs_isolation: FsIsolation.optional(),
  /** Mount points inside the world ("/usr ro", "/proj rw", ...), from its spawner's mountinfo. */
  mounts: z.array(z.string()).optional(),
  /** Layers that degraded for this world (one line each). */
  warnings: z.array(z.string()).optional(),
});
export type WorldInfo = z.infer<typeof WorldInfo>;

/**
 * Issue 13: what the transport knows about a request that the body cannot claim: the peer of
 * the Unix socket (SO_PEERCRED). A root world agent serves each request as that peer.
 */
export interface RequestContext {
  peer?: { pid: number; uid: number; gid: number };
}

export interface AgentService {
  capabilities(): Promise<Capabilities>;
  execute(req: ExecuteRequest, sink?: OutputSink, signal?: AbortSignal, ctx?: RequestContext): Promise<ExecuteResponse>;
  listWorlds(ctx?: RequestContext): Promise<WorldInfo[]>;
  deleteWorld(id: string, ctx?: RequestContext): Promise<boolean>;
  /** GET /v1/doctor/world (DS0, agent/doctor.ts). Optional: a proxy without it answers 501. */
  worldDoctor?(): Promise<WorldDoctorReportV1>;
  // Issue 6 (optional: an implementation without them answers 501 unsupported).
  /** GET /v1/trace/:span_id: the span (its command_complete line when there is one). */
  trace?(spanId: string): Promise<Span | undefined>;
  /** POST /v1/request_scopes: 200 when held, else throws ApiError approval_required (extra.approval). */
  requestScopes?(req: RequestScopesRequest, ctx?: RequestContext): Promise<RequestScopesResponse>;
  // POST /v1/request_scopes/approve answers 403 on every API socket (issue 18.5): approvals are
  // answered on the approver channel (src/api/approver.ts), not through this interface.
  /** Isolated results (issue 3): GET /v1/fs_diff/:span_id, POST …/apply, POST …/discard. */
  fsDiff?(spanId: string, ctx?: RequestContext): Promise<FsDiff>;
  applyFsDiff?(spanId: string, paths?: string[], ctx?: RequestContext): Promise<FsApplyResponse>;
  discardFsDiff?(spanId: string, ctx?: RequestContext): Promise<FsDiscardResponse>;
  /** GET /v1/budgets/:agent_id (ours). */
  budget?(agentId: string, ctx?: RequestContext): Promise<BudgetStatus | undefined>;
}

/** An error with an API code; the router turns it into `{error:{code,message,hint}}`. */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly hint?: string,
    /** Issue 6: extra top-level fields of the error body (e.g. `approval` of a 409). */
    readonly extra?: Record<string, unknown>,
  ) {
    super(message);
  }
}
