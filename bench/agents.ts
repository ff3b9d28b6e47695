#!/usr/bin/env bun
/**
 * Issue 16 figures: what routing an agent through Substrate costs per command.
 *  1. Claude Code's wrapper shape (`<shell> -c WRAPPER`, cwd file) through the bash entry
 *     (the shim) vs plain `bash -c` of the same wrapper, same run → overhead per command.
 *  2. A 100-command agent session (a mix: ls, cat, grep, git status-like, a failing test)
 *     through the entry (one process per command, as Claude/Gemini/Goose do) and through the
 *     MCP server's run_command (one long-lived server, the SDK's own client over stdio).
 * Prints median and p99 with ratios against the same-run baseline; never fails on time.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { hostArgv, startAgent } from "../tests/helpers/agent.ts";
import { figure, measure, report } from "./_stats.ts";

const N = Number(process.env.BENCH_N ?? 50);
const SESSION = Number(process.env.BENCH_SESSION ?? 100);
const proj = mkdtempSync(join(tmpdir(), "substrate-bench-agents-"));
mkdirSync(join(proj, ".git"));
mkdirSync(join(proj, "src"));
for (let i = 0; i < 20; i++) writeFileSync(join(proj, "src", `f${i}.ts`), `export const x${i} = ${i};\n// TODO ${i}\n`);
const tmp = mkdtempSync("/tmp/substrate-bench-tmp-");
const shims = mkdtempSync(join(tmpdir(), "substrate-bench-shims-"));
const sub = hostArgv();
const shim = join(shims, "bash");
if (sub.length === 1) symlinkSync(sub[0]!, shim);
else {
  writeFileSync(shim, `#!/bin/bash\nexec -a bash ${sub.map((s) => `'${s}'`).join(" ")} "$@"\n`);
  chmodSync(shim, 0o755);
}

const agent = await startAgent();
const env = { PATH: `${shims}:/usr/local/bin:/usr/bin:/bin`, HOME: proj, TMPDIR: tmp, LANG: "C.UTF-8", SUBSTRATE_WORLD_SOCKET: agent.socket, SUBSTRATE_TRACE: join(tmp, "trace.jsonl"), CLAUDECODE: "1" };
const plainEnv = { ...env, PATH: "/usr/local/bin:/usr/bin:/bin" };
let k = 0;
const claude = (cmd: string) => {
  const cwdFile = join(tmp, `claude-${(k++).toString(16)}-cwd`);
  return `shopt -u extglob 2>/dev/null || true && { \\builtin unalias -- 'unsetenv'; \\builtin unset -f -- 'unsetenv'; } >/dev/null 2>&1 || true && eval '${cmd}' < /dev/null && pwd -P >| ${cwdFile}`;
};
const spawn = async (argv: string[], e: Record<string, string>) => {
  const p = Bun.spawn(argv, { cwd: proj, env: e, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  await new Response(p.stdout as ReadableStream).arrayBuffer();
  await p.exited;
};

try {
  // 1. per command, Claude's wrapper shape
  const plain = await measure(N, () => spawn(["bash", "-c", claude("ls src | head -3")], plainEnv));
  const plainFig = figure("plain bash -c <Claude wrapper>", plain);
  report(plainFig);
  const entry = await measure(N, () => spawn([shim, "-c", claude("ls src | head -3")], env));
  const entryFig = figure("bash entry -c <Claude wrapper> (world, cwd file)", entry, { baseline: "plain bash -c", ratio: 0 });
  entryFig.ratio = entryFig.median_ms / plainFig.median_ms;
  report(entryFig);
  console.log(`overhead per command (median): ${(entryFig.median_ms - plainFig.median_ms).toFixed(1)} ms`);
  const noSide = await measure(N, () => spawn([shim, "-c", "ls src | head -3"], env));
  const noSideFig = figure("bash entry -c CMD (no side channel)", noSide, { baseline: "plain bash -c", ratio: 0 });
  noSideFig.ratio = noSideFig.median_ms / plainFig.median_ms;
  report(noSideFig);

  // 2. a 100-command session
  const mix = ["ls -la", "cat src/f1.ts", "grep -rn TODO src | wc -l", "test -d .git && echo repo", "false", "echo $((6*7))", "head -1 src/f2.ts", "find src -name '*.ts' | wc -l", "pwd", "true"];
  const cmds = Array.from({ length: SESSION }, (_, i) => mix[i % mix.length]!);
  const sessionEntry: number[] = [];
  for (const c of cmds) {
    const t = performance.now();
    await spawn([shim, "-c", c], env);
    sessionEntry.push(performance.now() - t);
  }
  const sessionPlain: number[] = [];
  for (const c of cmds) {
    const t = performance.now();
    await spawn(["bash", "-c", c], plainEnv);
    sessionPlain.push(performance.now() - t);
  }
  const spFig = figure(`session of ${SESSION}: plain bash -c per command`, sessionPlain.sort((a, b) => a - b));
  report(spFig);
  const seFig = figure(`session of ${SESSION}: bash entry per command`, sessionEntry.sort((a, b) => a - b), { baseline: "plain bash -c", ratio: 0 });
  seFig.ratio = seFig.median_ms / spFig.median_ms;
  report(seFig);

  const [cmd, ...args] = sub;
  const client = new Client({ name: "bench", version: "1" });
  await client.connect(new StdioClientTransport({ command: cmd!, args: [...args, "mcp"], cwd: proj, env }));
  await client.callTool({ name: "run_command", arguments: { command: "true" } }); // warm
  const sessionMcp: number[] = [];
  for (const c of cmds) {
    const t = performance.now();
    await client.callTool({ name: "run_command", arguments: { command: c } });
    sessionMcp.push(performance.now() - t);
  }
  await client.close();
  const smFig = figure(`session of ${SESSION}: MCP run_command per command`, sessionMcp.sort((a, b) => a - b), { baseline: "plain bash -c", ratio: 0 });
  smFig.ratio = smFig.median_ms / spFig.median_ms;
  report(smFig);
  const total = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / 1000;
  console.log(`session totals: plain ${total(sessionPlain).toFixed(2)} s, entry ${total(sessionEntry).toFixed(2)} s, MCP ${total(sessionMcp).toFixed(2)} s`);
} finally {
  await agent.stop();
  for (const d of [proj, tmp, shims]) rmSync(d, { recursive: true, force: true });
}
