/**
 * Issue 16: the ONE place the agent entry points (the bash entry, `substrate mcp`) hand a
 * command to the host pipeline (src/run/, issue 17). Nothing here decides policy, world, span
 * or fallback: runIntent() does. This file only says what an agent-facing run looks like, so
 * that a change of the pipeline's API is a change of this file alone.
 */
import type { RunIntent, RunOutcome } from "../run/index.ts";

export interface EntryRun {
  /** exactly what runs in the world: `["bash", <the caller's own bash arguments>…]` or an argv */
  argv: string[];
  cwd: string;
  env: Record<string, string | undefined>;
  /** pipes: this process's stdio; pty: a PTY in the world; buffered: captured (MCP) */
  io: "pipes" | "pty" | "buffered";
  /** "shell" for the bash entry, "api" for MCP */
  component: "shell" | "api";
  /** approvals: "tty" prompts on a terminal; "api" returns approval_required (MCP, agents) */
  asker: "tty" | "api";
  agentId?: string;
  worldFlag?: boolean;
  stdin?: Uint8Array;
  onOutput?: (stream: "stdout" | "stderr", chunk: Uint8Array) => void;
  signal?: AbortSignal;
  say?: (line: string) => void;
  /** pipes/pty io: streams instead of this process's own (MCP start_process) */
  stdio?: RunIntent["stdio"];
  /** a fresh overlay world; the result waits for world_apply / `substrate apply` */
  isolated?: boolean;
  /** pipes io: signals passed on to the command's process group in the world (the bash entry) */
  forwardSignals?: NodeJS.Signals[];
}

export type EntryOutcome = RunOutcome;

export async function runEntry(e: EntryRun): Promise<EntryOutcome> {
  const { runIntent } = await import("../run/index.ts");
  const intent: RunIntent = {
    what: { argv: e.argv },
    cwd: e.cwd,
    env: e.env,
    io: e.io,
    component: e.component,
    asker: e.asker,
    ...(e.agentId ? { agentId: e.agentId } : {}),
    ...(e.worldFlag !== undefined ? { worldFlag: e.worldFlag } : {}),
    ...(e.stdin ? { stdin: e.stdin } : {}),
    ...(e.onOutput ? { onOutput: e.onOutput } : {}),
    ...(e.signal ? { signal: e.signal } : {}),
    ...(e.say ? { say: e.say } : {}),
    ...(e.stdio ? { stdio: e.stdio } : {}),
    ...(e.isolated ? { isolated: true } : {}),
    ...(e.forwardSignals ? { forwardSignals: e.forwardSignals } : {}),
  };
  return runIntent(intent);
}

/** A second, bookkeeping-only read in the same world (side channels, src/cli/bash-side.ts). */
export async function readWorldFile(path: string, o: { cwd: string; env: Record<string, string | undefined>; worldFlag?: boolean }): Promise<string | null> {
  const out = await runEntry({
    argv: ["/bin/sh", "-c", 'cat -- "$1" 2>/dev/null && rm -f -- "$1"', "substrate-side-channel", path],
    cwd: o.cwd,
    env: o.env,
    io: "buffered",
    component: "shell",
    asker: "api",
    ...(o.worldFlag !== undefined ? { worldFlag: o.worldFlag } : {}),
    say: () => {},
  });
  if (out.exit !== 0 || out.ran !== "world" || !out.stdout) return null;
  return Buffer.from(out.stdout).toString("utf8");
}
