/** A client for the agent of the effective config (starting it when allowed), for commands that need one. */
import type { AgentClient } from "../api/client.ts";
import { effectiveConfig } from "../config.ts";
import { WorldUnavailable } from "../world/backend.ts";
import { selectBackend } from "./_backend.ts";
import { CliError, ExitCode } from "./_errors.ts";
import { getGlobals } from "./_globals.ts";

export async function agentClient(o: { start?: boolean } = {}): Promise<AgentClient> {
  const cfg = effectiveConfig({ worldFlag: getGlobals().world });
  if (!cfg.world_enabled) throw new CliError(ExitCode.UNSUPPORTED, "the world is disabled (--no-world / SUBSTRATE_WORLD=disabled)", "drop --no-world");
  try {
    return (await selectBackend(cfg).ensureReady({ start: o.start ?? false })).client;
  } catch (e) {
    if (e instanceof WorldUnavailable) throw new CliError(ExitCode.UNAVAILABLE, e.message, e.hint);
    throw e;
  }
}

/** Map client errors to CLI errors (404 → usage-ish 2 with the server's hint). */
export async function withClientErrors<T>(f: () => Promise<T>): Promise<T> {
  const { AgentApiError, AgentUnreachable } = await import("../api/client.ts");
  try {
    return await f();
  } catch (e) {
    if (e instanceof AgentApiError) throw new CliError(e.status >= 500 ? ExitCode.UNAVAILABLE : ExitCode.USAGE, e.message, e.hint);
    if (e instanceof AgentUnreachable) throw new CliError(ExitCode.UNAVAILABLE, e.message, "run `substrate world doctor`");
    throw e;
  }
}
