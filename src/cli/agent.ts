/**
 * `substrate agent setup <agent> [--write | --undo] [--json]` and `substrate agent status [--json]`
 * (issue 16): print, apply or undo the one setting that routes a coding agent through
 * Substrate (src/cli/agent-setups.ts; docs/AGENTS.md).
 */
import { homedir } from "node:os";
import { join } from "node:path";
import { defineCommand } from "citty";
import { CliError, ExitCode } from "./_errors.ts";
import { getGlobals } from "./_globals.ts";
import { AGENTS, agentSetups, ensureShellShims, statusOf, undoSetup, writeSetup, type SetupCtx } from "./agent-setups.ts";

export async function setupCtx(): Promise<SetupCtx> {
  const { substrateDir } = await import("../broker/load.ts");
  const { substrateInvocation } = await import("../shim/script.ts");
  const dir = substrateDir();
  return { home: process.env.HOME || homedir(), substrateDir: dir, shimDir: join(dir, "shims"), substrate: substrateInvocation() };
}

const setup = defineCommand({
  meta: { name: "setup", description: `Print (or --write / --undo) the one setting that routes an agent through substrate: ${AGENTS.join(", ")}` },
  args: {
    agent: { type: "positional", required: true, description: AGENTS.join(" | "), valueHint: "AGENT" },
    write: { type: "boolean", description: "Apply it (idempotent; the previous bytes are kept for --undo)" },
    undo: { type: "boolean", description: "Put the agent's config back as it was before --write" },
    json: { type: "boolean", description: "Machine-readable output" },
  },
  async run({ args }) {
    const name = String(args.agent);
    const ctx = await setupCtx();
    const s = agentSetups(ctx).find((x) => x.agent === name);
    if (!s) throw new CliError(ExitCode.USAGE, `unknown agent ${name}`, `one of: ${AGENTS.join(", ")}`);
    const json = args.json || getGlobals().json;
    if (args.write && args.undo) throw new CliError(ExitCode.USAGE, "--write and --undo exclude each other");
    if (!args.write && !args.undo) {
      if (json) return void console.log(JSON.stringify({ agent: s.agent, file: s.file, setting: s.snippet, summary: s.summary }, null, 2));
      console.log(`# ${s.summary}`);
      console.log(s.file ? `# in ${s.file}:` : "# run:");
      console.log(s.snippet);
      if (s.file) console.log(`# apply: substrate agent setup ${s.agent} --write   (undo: --undo)`);
      return;
    }
    let r;
    try {
      if (args.write) {
        const shims = ensureShellShims(ctx);
        r = writeSetup(ctx, s);
        if (shims.length && !json) console.log(`shims: ${shims.join(" ")}`);
      } else r = undoSetup(ctx, s);
    } catch (e) {
      throw new CliError(ExitCode.USAGE, (e as Error).message);
    }
    console.log(json ? JSON.stringify(r) : r.message);
  },
});

const status = defineCommand({
  meta: { name: "status", description: "Which coding agents on this machine are routed through substrate" },
  args: { json: { type: "boolean", description: "Machine-readable output" } },
  async run({ args }) {
    const ctx = await setupCtx();
    const rows = agentSetups(ctx).map(statusOf);
    const { existsSync } = await import("node:fs");
    const shim = join(ctx.shimDir, "bash");
    const shimOk = existsSync(shim); // follows the link: the binary it names must exist too
    if (args.json || getGlobals().json) return void console.log(JSON.stringify({ shim, shim_ok: shimOk, agents: rows }, null, 2));
    console.log(`shim: ${shim} ${shimOk ? "(ok)" : "(missing: substrate agent setup AGENT --write creates it)"}`);
    for (const r of rows) console.log(`${r.routed ? "routed    " : "not routed"}  ${r.agent.padEnd(9)} ${r.file ?? "(start it with: substrate run -- PROGRAM)"}`);
  },
});

export default defineCommand({
  meta: { name: "agent", description: "Route coding agents (Claude Code, Codex, Gemini CLI, Goose, Aider, OpenHands) through substrate: setup, status" },
  subCommands: { setup, status },
});
