/**
 * THE HOST PIPELINE: every command Substrate runs on a user's behalf goes through here.
 *
 * Stable API (other entry points call only this; see docs/ARCHITECTURE.md "The pipeline"):
 *
 *   import { runIntent, type RunIntent, type RunOutcome } from "../run/index.ts";
 *
 *   const out = await runIntent({
 *     what: { cmd: "npm test" } | { argv: ["bash", "-c", "echo $0", "a0"] },
 *     cwd, env,                       // default process.cwd() / process.env
 *     io: "pipes" | "pty" | "buffered",
 *     component: "shell" | "shim" | "api",
 *     asker: "tty" | "api" | "deny-list",
 *     isolated?, requireApproval?, worldFlag?, agentId?, worldOverride?,
 *     stdin?, onOutput?, stdio?, ptyFilter?, signal?,
 *   });
 *   out.exit          // the exit code to use (126 denied, 3 world unavailable, 128+N signal…)
 *   out.ran           // "world" | "host" | "denied" | "approval_required"
 *   out.stdout/stderr // buffered io only
 *   out.span_id, out.session_id, out.world_id, out.fs_diff, out.decision, out.approval
 *
 * Errors a user can act on are thrown as CliError (exit code + message + hint; the CLI
 * prints them); everything else is a bug.
 *
 * Stages, each the only place its decision is made:
 *   intent.ts   what the caller wants (pure types)
 *   gate.ts     the policy decision with one of three askers (terminal, API 409, deny list)
 *   plan.ts     the world spec from the policy (worldSpecFor), the world env, isolation and
 *               the span context (SpanContext, src/trace/span.ts): nothing else builds either
 *   execute.ts  optimistic client → ensure-ready → isolation-unavailable rule → host
 *               fallback, once; pipes / pty / buffered are io modes of the same path
 *   io.ts       the /v1/stream client (pty and streamed-stdin pipes) and the host runner
 */
export type { RunIntent, RunOutcome, IoMode, AskerKind, What } from "./intent.ts";
export { commandLine } from "./intent.ts";
import type { RunIntent, RunOutcome } from "./intent.ts";

/** Run one command through the whole pipeline (gate → plan → execute). */
export async function runIntent(intent: RunIntent): Promise<RunOutcome> {
  const { mark, dumpTiming } = await import("./timing.ts");
  mark("pipeline");
  const [{ plan }, { execute }] = await Promise.all([import("./plan.ts"), import("./execute.ts")]);
  mark("loaded");
  try {
    return await execute(await plan(intent));
  } finally {
    dumpTiming();
  }
}
