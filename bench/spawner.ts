#!/usr/bin/env bun
/**
 * Issue 14.1 / 13: what the two-stage spawner and caller identity cost, same run:
 *   - world creation through the API (first execute of a new agent_id = a new session world,
 *     minus a warm execute), the agent's own build; with BENCH_BASELINE_AGENT=<path to an older
 *     substrate-world-agent> the same against that binary (before: one stage, no caller);
 *   - a warm execute (/bin/true through POST /v1/execute): must be unchanged;
 *   - the compiled agent's bare start (`--version`): the re-exec's share of world creation.
 * Network off (the egress setup has its own bench); baseline: bare Bun.spawn(/bin/true).
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AGENT_BIN, startAgent, type TestAgent } from "../tests/helpers/agent.ts";
import { figure, measure, report } from "./_stats.ts";

const N = Number(process.env.BENCH_N ?? 15);
const NX = Number(process.env.BENCH_EXEC_N ?? 100);
const proj = mkdtempSync(join(tmpdir(), "substrate-bench-spawner-"));

const bare = figure("bare Bun.spawn(/bin/true)", await measure(NX, () => Bun.spawn(["/bin/true"]).exited));
report(bare);
if (existsSync(AGENT_BIN)) report({ ...figure("agent binary start (--version): one re-exec", await measure(N, () => Bun.spawn([AGENT_BIN, "--version"], { stdout: "ignore" }).exited)), baseline: "bare spawn" });

async function suite(label: string, argv?: string[]): Promise<void> {
  const agent: TestAgent = await startAgent(argv ? { argv } : {});
  try {
    let n = 0;
    const create = figure(
      `${label}: world creation + first execute (new agent_id)`,
      await measure(N, async () => {
        const r = await agent.client.execute({ argv: ["/bin/true"], cwd: proj, agent_id: `bench-${label}-${n++}`, world: { isolate_network: false } });
        await agent.client.deleteWorld(r.world_id);
      }),
    );
    report(create);
    await agent.client.execute({ argv: ["/bin/true"], cwd: proj, agent_id: "warm", world: { isolate_network: false } });
    const warm = figure(`${label}: warm execute /bin/true`, await measure(NX, () => agent.client.execute({ argv: ["/bin/true"], cwd: proj, agent_id: "warm", world: { isolate_network: false } })));
    report({ ...warm, baseline: "bare spawn", ratio: warm.median_ms / bare.median_ms });
    console.log(`  ${label}: world creation ≈ ${(create.median_ms - warm.median_ms).toFixed(1)} ms (first execute minus warm execute, medians)`);
  } finally {
    await agent.stop();
  }
}

await suite("now");
const old = process.env.BENCH_BASELINE_AGENT;
if (old && existsSync(old)) await suite("baseline agent", [old]);
rmSync(proj, { recursive: true, force: true });
