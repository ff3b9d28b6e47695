/**
 * The world backend seen by the CLI, broker, trace and proxy (spec: WorldBackend). Each
 * platform gets an agent answering the same /v1 API somewhere; after `ensureReady` the
 * rest of the host code only talks to the returned client, so nothing above this line
 * depends on the platform.
 */
import type { WorldBackendName } from "../contract/index.ts";
import type { AgentClient } from "../api/client.ts";

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
