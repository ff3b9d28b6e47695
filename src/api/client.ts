/**
 * Typed client for the `/v1` API over a Unix socket (Bun's fetch `unix` option). Every
 * response is validated with the contract; transport failures become AgentUnreachable,
 * API errors become AgentApiError carrying the server's code and hint.
 */
// Specific contract files, not the index: the `substrate -c` hot path must not pay for
// building every schema of the project (zod construction costs tens of ms).
import { Capabilities } from "../contract/capabilities.ts";
import { ErrorBody } from "../contract/common.ts";
import { ExecuteResponse, ExecuteStreamFrame, type ExecuteRequestInput } from "../contract/execute.ts";
import { WorldInfo } from "./service.ts";
import { ndjsonLines } from "./ndjson.ts";
import { FsDiff } from "../contract/world.ts";
import { FsApplyResponse, FsDiscardResponse } from "../contract/fsdiff.ts";
import { z } from "zod";

export class AgentUnreachable extends Error {
  override name = "AgentUnreachable";
  constructor(
    readonly socketPath: string,
    readonly reason: string,
  ) {
    super(`world agent unreachable at ${socketPath}: ${reason}`);
  }
}

export class AgentApiError extends Error {
  override name = "AgentApiError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

/**
 * Issue 18 faults (RELIABILITY): the agent went away AFTER it took the request (connection
 * reset mid-request or mid-stream): the command may have run, so this is never "unreachable"
 * (which callers treat as "nothing ran": start an agent, retry, or fall back to the host).
 * An API error 503 `unavailable`, so every caller maps it like the agent's own 503s (CLI: exit 3).
 */
export class AgentLost extends AgentApiError {
  override name = "AgentLost";
  constructor(
    readonly socketPath: string,
    reason: string,
  ) {
    super(
      503,
      "unavailable",
      `the world agent at ${socketPath} went away while the command ran (${reason}); its outcome is unknown`,
      "its worlds went with it; the next command gets a fresh world once the agent is back (`substrate world doctor`)",
    );
  }
}

/** Connect failures: nothing reached the agent, so nothing ran. */
const NOT_CONNECTED = new Set(["ENOENT", "ECONNREFUSED", "EACCES", "EPERM", "ENOTSOCK", "ENOTDIR", "FailedToOpenSocket", "ConnectionRefused", "ERR_INVALID_URL"]);
const errCode = (e: unknown): string => String((e as { code?: unknown }).code ?? (e as Error).name ?? "");

export interface ClientOptions {
  /** Abort a request after this long (capabilities probes); none by default. */
  timeoutMs?: number;
  headers?: Record<string, string>;
}

export class AgentClient {
  constructor(
    readonly socketPath: string,
    private readonly opts: ClientOptions = {},
  ) {}

  async request(method: string, path: string, body?: unknown, timeoutMs = this.opts.timeoutMs): Promise<Response> {
    try {
      return await fetch(`http://localhost${path}`, {
        method,
        unix: this.socketPath,
        headers: { ...(body !== undefined ? { "content-type": "application/json" } : {}), ...this.opts.headers },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined,
      } as RequestInit);
    } catch (e) {
      // Faults (issue 18): a POST the agent took and then dropped may have run.
      const code = errCode(e);
      if (method !== "GET" && !NOT_CONNECTED.has(code) && code !== "TimeoutError" && code !== "AbortError") throw new AgentLost(this.socketPath, code || (e as Error).message);
      throw new AgentUnreachable(this.socketPath, (e as Error).message);
    }
  }

  private async json<T extends z.ZodType>(schema: T, res: Response): Promise<z.infer<T>> {
    const text = await res.text();
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      throw new AgentApiError(res.status, "internal", `agent answered ${res.status} with non-JSON: ${text.slice(0, 200)}`);
    }
    if (!res.ok) {
      const eb = ErrorBody.safeParse(data);
      if (eb.success) throw new AgentApiError(res.status, eb.data.error.code, eb.data.error.message, eb.data.error.hint);
      throw new AgentApiError(res.status, "internal", `agent answered ${res.status}: ${text.slice(0, 200)}`);
    }
    const r = schema.safeParse(data);
    if (!r.success) throw new AgentApiError(res.status, "internal", `agent response does not match the contract: ${r.error.message}`);
    return r.data;
  }

  async capabilities(timeoutMs?: number): Promise<Capabilities> {
    return this.json(Capabilities, await this.request("GET", "/v1/capabilities", undefined, timeoutMs));
  }

  async execute(req: ExecuteRequestInput): Promise<ExecuteResponse> {
    return this.json(ExecuteResponse, await this.request("POST", "/v1/execute", { ...req, stream: false }));
  }

  /** Streamed execute: yields stdout/stderr frames, ends with `result` (or throws). */
  async *executeStream(req: ExecuteRequestInput): AsyncGenerator<ExecuteStreamFrame> {
    const res = await this.request("POST", "/v1/execute", { ...req, stream: true });
    if (!res.ok || !res.headers.get("content-type")?.includes("ndjson")) {
      await this.json(z.never(), res);
      return;
    }
    const lines = ndjsonLines(res.body!);
    for (;;) {
      let next: IteratorResult<unknown>;
      try {
        next = await lines.next();
      } catch (e) {
        throw new AgentLost(this.socketPath, errCode(e) || (e as Error).message); // issue 18: died mid-stream
      }
      if (next.done) return;
      const frame = ExecuteStreamFrame.parse(next.value);
      if (frame.type === "error") throw new AgentApiError(500, frame.error.code, frame.error.message, frame.error.hint);
      yield frame;
    }
  }

  /** Isolated results: the diff of a span, apply (all or some paths), discard. */
  async fsDiff(spanId: string): Promise<FsDiff> {
    return this.json(FsDiff, await this.request("GET", `/v1/fs_diff/${encodeURIComponent(spanId)}`));
  }
  async applyFsDiff(spanId: string, paths?: string[]): Promise<FsApplyResponse> {
    return this.json(FsApplyResponse, await this.request("POST", `/v1/fs_diff/${encodeURIComponent(spanId)}/apply`, paths ? { paths } : {}));
  }
  async discardFsDiff(spanId: string): Promise<void> {
    await this.json(FsDiscardResponse, await this.request("POST", `/v1/fs_diff/${encodeURIComponent(spanId)}/discard`));
  }

  async listWorlds(): Promise<WorldInfo[]> {
    return (await this.json(z.object({ worlds: z.array(WorldInfo) }), await this.request("GET", "/v1/worlds"))).worlds;
  }

  async deleteWorld(id: string): Promise<void> {
    await this.json(z.object({ deleted: z.literal(true) }), await this.request("DELETE", `/v1/worlds/${encodeURIComponent(id)}`));
  }
}
