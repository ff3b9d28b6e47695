/**
 * The agent API as an interface. The world agent implements it against real worlds; the
 * host proxy implements it by forwarding. `buildRouter` turns any implementation into the
 * same `/v1` HTTP surface, so both sockets answer identically.
 */
import type { Capabilities, ErrorCode, ExecuteRequest, ExecuteResponse, WorldDoctorReportV1 } from "../contract/index.ts";
import { z } from "zod";

export interface OutputSink {
  stdout(b: Uint8Array): void;
  stderr(b: Uint8Array): void;
}

export const WorldInfo = z.strictObject({
  id: z.string(),
  project_dir: z.string(),
  isolated: z.boolean(),
  isolate_network: z.boolean(),
  created_at: z.string(),
  age_ms: z.number().int().nonnegative(),
  execs: z.number().int().nonnegative(),
});
export type WorldInfo = z.infer<typeof WorldInfo>;

export interface AgentService {
  capabilities(): Promise<Capabilities>;
  execute(req: ExecuteRequest, sink?: OutputSink, signal?: AbortSignal): Promise<ExecuteResponse>;
  listWorlds(): Promise<WorldInfo[]>;
  deleteWorld(id: string): Promise<boolean>;
  /** GET /v1/doctor/world (DS0, agent/doctor.ts). Optional: a proxy without it answers 501. */
  worldDoctor?(): Promise<WorldDoctorReportV1>;
}

/** An error with an API code; the router turns it into `{error:{code,message,hint}}`. */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}
