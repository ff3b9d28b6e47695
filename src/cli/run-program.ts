/**
 * `substrate run [--agent-id ID] -- PROGRAM [ARGS]` (issue 16): start any program (an agent
 * with no shell setting of its own) on the host with every shell it starts pointed at
 * Substrate: SHELL = ~/.substrate/shims/bash, the shim dir first on PATH (so `bash`, `sh` by
 * name are the entry), SUBSTRATE_AGENT_ID. Exits with the program's status; TERM/INT/HUP are
 * passed on to it.
 */
import { basename, join } from "node:path";
import { defineCommand } from "citty";
import { CliError, ExitCode, signalExit } from "./_errors.ts";

export function launchEnv(env: NodeJS.ProcessEnv, shimDir: string, agentId: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  const path = (env.PATH ?? "/usr/local/bin:/usr/bin:/bin").split(":").filter((p) => p && p !== shimDir);
  out.PATH = [shimDir, ...path].join(":");
  out.SHELL = join(shimDir, "bash");
  out.SUBSTRATE_AGENT_ID = agentId;
  return out;
}

export default defineCommand({
  meta: { name: "run", description: "Start PROGRAM on the host with all its shell use routed through substrate (SHELL, PATH shims, SUBSTRATE_AGENT_ID)" },
  args: {
    "agent-id": { type: "string", description: "SUBSTRATE_AGENT_ID for its commands (default: the program's name)", valueHint: "ID" },
    program: { type: "positional", required: false, description: "-- PROGRAM [ARGS]", valueHint: "-- PROGRAM ARGS..." },
  },
  async run({ rawArgs, args }) {
    const k = rawArgs.indexOf("--");
    const argv = k >= 0 ? rawArgs.slice(k + 1) : rawArgs.filter((a, i) => !a.startsWith("--agent-id") && rawArgs[i - 1] !== "--agent-id");
    if (argv.length === 0) throw new CliError(ExitCode.USAGE, "substrate run needs a program", "usage: substrate run -- PROGRAM [ARGS]");
    const { setupCtx } = await import("./agent.ts");
    const { ensureShellShims } = await import("./agent-setups.ts");
    const ctx = await setupCtx();
    ensureShellShims(ctx);
    const env = launchEnv(process.env, ctx.shimDir, (args["agent-id"] as string | undefined) || basename(argv[0]!));
    let proc;
    try {
      proc = Bun.spawn(argv, { env, stdio: ["inherit", "inherit", "inherit"] });
    } catch (e) {
      throw new CliError(127, `cannot start ${argv[0]}: ${(e as Error).message}`, "is it installed and on PATH?");
    }
    const fwd = (sig: NodeJS.Signals) => () => proc.kill(sig);
    const handlers = (["SIGTERM", "SIGINT", "SIGHUP"] as const).map((s) => [s, fwd(s)] as const);
    for (const [s, h] of handlers) process.on(s, h);
    const code = await proc.exited;
    for (const [s, h] of handlers) process.off(s, h);
    process.exitCode = signalExit((proc.signalCode as string | null) ?? null, code);
  },
});
