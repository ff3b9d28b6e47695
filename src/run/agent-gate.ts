/**
 * The agent-side half of the one gate (docs/ARCHITECTURE.md "Where the policy decision
 * runs"): what the world agent applies to EVERY execute and stream start, however it
 * arrived — through the host pipeline, the proxy, or a client on the agent's own socket.
 * It is the pipeline's own gate with the API asker (deny → 403, approval → 409 + a pending
 * approval, `commands.isolated` → isolated) and the pipeline's own world builder
 * (worldSpecFor: the policy's limits, allowlist and reuse), for the caller's policy: the
 * one in force for the request's cwd under the caller's home.
 *
 *   // agent/service.ts, at the top of the one startInWorld (LEAD):
 *   const gated = await agentGate(req, { home: callerHome, approvals });
 *   req = gated.request;              // world from the policy; isolated when it says so
 *
 * The proxy's ForwardingService.gate makes the same decision today with the same two calls
 * (gate + worldSpecFor); it can call this with `{ loaded: broker.current(cwd), approvals, cfg }`.
 *
 * Throws ApiError("denied" | "approval_required" | "unavailable"); never prompts.
 */
import type { WorldSpecInput } from "../contract/world.ts";
import type { ApiApprovals } from "../broker/api.ts";
import { ApiError } from "../api/service.ts";
import { SpanContext } from "../trace/span.ts";
import { commandLine } from "./intent.ts";
import { gate } from "./gate.ts";

/** decideForCli without a terminal never reads stdin (it refuses what needs an answer). */
const NO_STDIN = { isTTY: false } as unknown as NodeJS.ReadableStream;
import { projectDirOf, worldSpecFor } from "./plan.ts";

export interface AgentGateRequest {
  cmd?: string;
  argv?: string[];
  cwd?: string;
  env?: Record<string, string>;
  isolated?: boolean;
  world?: WorldSpecInput;
}

export interface AgentGateOptions {
  /** the caller's home (from its uid, issue 13): its ~/.substrate policies, approvals, config */
  home?: string;
  /** the agent's (or the proxy's) pending approvals, one holder per process */
  approvals?: ApiApprovals;
  /** the policy already loaded for the cwd (the proxy's hot-reloading PolicyBroker) */
  loaded?: import("../broker/load.ts").LoadedPolicy;
  /** record the project's policy selection on first use (default true; the agent's helper records too: it runs as the caller, issue 14.4) */
  record?: boolean;
  /** the effective config (default: the caller's, from `home`) */
  cfg?: Pick<import("../contract/config.ts").EffectiveConfig, "isolate_network" | "world_fs_mode" | "world_fs_isolation">;
  /**
   * The CLI's fast path (src/cli/fast.ts, StreamStart.host_span): the host did not gate this
   * command, so this is its only gate — the TERMINAL asker's decision (decideForCli, as the
   * host would have made it, without a terminal), under the host command's span context, events
   * returned rather than written (the caller writes them with the host span, agent/policyd.ts).
   * Anything but a plain run is refused before anything runs (the CLI then runs its pipeline,
   * which asks at the terminal, prints the refusal, runs it isolated or shows the notice).
   */
  host?: { session_id: string; parent_span?: string };
}

/** What the fast path's host span needs from the gate (agent/policyd.ts writes it). */
export interface HostGate {
  cmd: string;
  policy_id: string;
  policy_commit?: string;
  events: import("../contract/policy.ts").PolicyEvent[];
}

export async function agentGate<T extends AgentGateRequest>(req: T, o: AgentGateOptions = {}): Promise<{ request: T & { world: WorldSpecInput; isolated?: boolean }; decision: string; host?: HostGate; quiet?: boolean }> {
  const cwd = req.cwd ?? req.world?.project_dir ?? "/";
  const cmd = commandLine(req.cmd !== undefined ? { cmd: req.cmd } : { argv: req.argv ?? [] });
  const [{ loadEffectivePolicySync, PolicyError }, { effectiveConfig }] = await Promise.all([import("../broker/load.ts"), import("../config.ts")]);
  let loaded = o.loaded;
  try {
    loaded ??= loadEffectivePolicySync(cwd, { ...(o.home !== undefined ? { home: o.home } : {}), ...(o.record === false ? { record: false } : {}) });
  } catch (e) {
    if (e instanceof PolicyError) throw new ApiError("unavailable", `the policy for ${cwd} cannot be loaded: ${e.message.split("\n")[0]}`, "fix it (`substrate policy validate`)");
    throw e;
  }
  const quiet = { write: () => true };
  if (o.host) {
    // the fast path: the host's own decision for this command (see AgentGateOptions.host)
    const span = SpanContext.of(o.host.session_id, o.host.parent_span);
    const fallback = (why: string) => new ApiError("unsupported", `the host pipeline decides this command: ${why}`, "run it without host_span (the CLI does)");
    if (loaded.source.selection?.notice) throw fallback("its project's policy selection has a notice");
    if (req.isolated) throw fallback("isolated");
    const d = await gate({ cmd, cwd, asker: "tty", component: "shell", loaded, ...(o.home !== undefined ? { home: o.home } : {}), stderr: quiet, stdin: NO_STDIN, isTTY: false, span, record: false });
    if (d.action !== "run") throw fallback(d.action === "run_isolated" ? "the policy runs it isolated" : (d.message ?? "denied").replace(/^substrate: /, "").split("\n")[0]!);
    const cfg = o.cfg ?? effectiveConfig(o.home !== undefined ? { home: o.home, env: {} } : {});
    const world = await worldSpecFor({ policy: loaded.policy, cfg, projectDir: await projectDirOf(cwd) });
    return { request: { ...req, world }, decision: d.action, host: { cmd, policy_id: d.policy_id, ...(d.policy_commit ? { policy_commit: d.policy_commit } : {}), events: d.events } };
  }
  const span = SpanContext.fromEnv(req.env ?? {});
  const d = await gate({ cmd, cwd, asker: "api", component: "api", loaded, ...(o.approvals ? { approvals: o.approvals } : {}), stderr: quiet, span });
  if (d.action === "deny") throw new ApiError("denied", d.message ?? `denied by policy ${loaded.policy.id}`, d.hint);
  if (d.action === "approval_required") throw new ApiError("approval_required", d.message ?? "approval required", d.hint, { approval: d.approval });
  const cfg = o.cfg ?? effectiveConfig(o.home !== undefined ? { home: o.home, env: {} } : {});
  // The caller may only make its world stricter: a fresh world, no network.
  const asked = req.world ?? {};
  const override: Partial<WorldSpecInput> = {
    ...(asked.reuse_session === false ? { reuse_session: false } : {}),
    ...(asked.isolate_network === true ? { isolate_network: true } : {}),
  };
  const world = await worldSpecFor({ policy: loaded.policy, cfg, projectDir: req.cwd ? await projectDirOf(req.cwd) : (asked.project_dir ?? "/"), override });
  // quiet: a plain run that produced no policy event (the same line and policy give the same answer)
  return { request: { ...req, world, ...(d.action === "run_isolated" || req.isolated ? { isolated: true } : {}) }, decision: d.action, ...(d.action === "run" && d.events.length === 0 ? { quiet: true } : {}) };
}

/**
 * The CLI fast path's host spans (StreamStart.host_span), written by the caller's policy helper
 * (agent/policyd.ts, running AS the caller, into the caller's trace): the policy events and
 * `command_start` once the command started, `command_complete` when it ended — the same spans,
 * through the same code (recordEvents, CommandSpan), as the host pipeline's execute() writes.
 */
export async function startHostSpan(
  h: import("../contract/stream.ts").HostSpan,
  g: HostGate,
  o: { cwd: string; agentId: string },
): Promise<{ complete(r: import("../trace/command-span.ts").CommandResult): void }> {
  const [{ CommandSpan }, { recordEvents }] = await Promise.all([import("../trace/command-span.ts"), import("./gate.ts")]);
  const quiet = { write: () => true };
  await recordEvents(g.events, SpanContext.of(h.session_id, h.parent_span), quiet, h.trace);
  const span = CommandSpan.start({
    cmd: g.cmd,
    cwd: o.cwd,
    env: {},
    component: h.component,
    agent_id: o.agentId,
    span_id: h.span_id,
    session_id: h.session_id,
    ...(h.parent_span ? { parent_span: h.parent_span } : {}),
    policy_id: g.policy_id,
    ...(g.policy_commit ? { policy_commit: g.policy_commit } : {}),
    world_image_version: h.replay.world_image_version,
    tracePath: h.trace,
    replay: h.replay,
  });
  return { complete: (r) => span.complete(r) };
}
