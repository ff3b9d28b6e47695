/**
 * The world backend seen by the CLI, broker, trace and proxy (spec: WorldBackend). Each
 * platform gets an agent answering the same /v1 API somewhere; after `ensureReady` the
 * rest of the host code only talks to the returned client, so nothing above this line
 * depends on the platform.
 */
import type { WorldBackendName } from "../contract/world.ts";
import type { LifecycleMode, LifecycleReport, WorldStatusReport } from "../contract/lifecycle.ts";
import type { LimaProfileName, LimaWorldReport } from "../contract/index.ts";
import type { AgentClient } from "../api/client.ts";
import type { Progress } from "./progress.ts";

export type { Progress } from "./progress.ts";

/** `substrate world warm|stop|restart|status`: one action of the host backend. */
export type BackendAction = "warm" | "stop" | "restart" | "status";

export interface BackendOptions {
  progress: Progress;
  /** Linux: force a mode (`--mode`) */
  mode?: LifecycleMode;
  /** Linux socket activation: extra writable dirs */
  writable?: string[];
  /** Lima: the VM profile when creating it */
  profile?: LimaProfileName;
  /** Lima: the project mounted writable into a new VM */
  project?: string;
}

/** What an action did, per backend (the CLI renders each kind; --json prints `report`). */
export type BackendOutcome =
  | { kind: "linux-lifecycle"; report: LifecycleReport; exitCode: number }
  | { kind: "linux-status"; report: WorldStatusReport; exitCode: number }
  | { kind: "lima"; report: LimaWorldReport | null; exitCode: number; error?: { message: string; hint: string } };

export interface ReadyWorld {
  client: AgentClient;
  backend: WorldBackendName;
  socketPath: string;
  /** Set when this call had to start or provision something (one line for the user). */
  note?: string;
}

export interface WorldBackend {
  readonly name: WorldBackendName;
  /** Find (or start, when allowed) an agent; throws WorldUnavailable with a next step. */
  ensureReady(o: { start: boolean }): Promise<ReadyWorld>;
  /**
   * A client for the agent that is probably there, without probing it (the hot path tries
   * it first and falls back to ensureReady only when the connection is refused).
   */
  optimisticClient?(): AgentClient | null;
  /** The address optimisticClient() would use, without loading the client (the /v1/stream wire). */
  optimisticAddress?(): string | null;
  /** warm / stop / restart / status of this platform's agent (or VM). */
  lifecycle(action: BackendAction, o: BackendOptions): Promise<BackendOutcome>;
}

export class WorldUnavailable extends Error {
  override name = "WorldUnavailable";
  constructor(
    message: string,
    readonly hint: string,
  ) {
    super(message);
  }
}
