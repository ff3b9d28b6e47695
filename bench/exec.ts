#!/usr/bin/env bun
/**
 * Foundation latency: POST /v1/execute of /bin/true in a warm session world, against a bare
 * Bun.spawn('/bin/true') and `bwrap … /bin/true` measured in the same run; and
 * `substrate -c true` end to end (host binary start + HTTP + world exec).
 * Prints figures and ratios; never fails on time. Run as root (make bench).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostArgv, startAgent } from "../tests/helpers/agent.ts";
import { figure, measure, report } from "./_stats.ts";

const N = Number(process.env.BENCH_N ?? 200);
const proj = mkdtempSync(join(tmpdir(), "substrate-bench-"));

const bare = await measure(N, async () => {
  await Bun.spawn(["/bin/true"]).exited;
});
const bareFig = figure("bare Bun.spawn(/bin/true)", bare);
report(bareFig);

let bwrapFig;
if (Bun.which("bwrap")) {
  const bw = await measure(N, async () => {
    await Bun.spawn(["bwrap", "--unshare-all", "--ro-bind", "/", "/", "/bin/true"]).exited;
  });
  bwrapFig = figure("bwrap --unshare-all --ro-bind / / /bin/true", bw, { baseline: "bare spawn", ratio: 0 });
  bwrapFig.ratio = bwrapFig.median_ms / bareFig.median_ms;
  report(bwrapFig);
}

const agent = await startAgent();
try {
  await agent.client.execute({ argv: ["/bin/true"], cwd: proj, agent_id: "bench" }); // warm the world
  const api = await measure(N, () => agent.client.execute({ argv: ["/bin/true"], cwd: proj, agent_id: "bench" }));
  const f = figure("/v1/execute argv=[/bin/true], warm world", api, {
    baseline: "bare spawn",
    ratio: 0,
    goal: "<= bare + 2 ms",
  });
  f.ratio = f.median_ms / bareFig.median_ms;
  report(f);
  console.log(`  overhead over bare spawn: ${(f.median_ms - bareFig.median_ms).toFixed(3)} ms (median)`);
  if (bwrapFig) console.log(`  vs bwrap: ${(f.median_ms / bwrapFig.median_ms).toFixed(2)}x`);

  const sh = await measure(Math.min(N, 100), () => agent.client.execute({ cmd: "true", cwd: proj, agent_id: "bench" }));
  report(figure("/v1/execute cmd='true' (bash -c), warm world", sh, { baseline: "bare spawn", ratio: figure("", sh).median_ms / bareFig.median_ms }));

  const cli = hostArgv();
  const env = { ...process.env, SUBSTRATE_WORLD_SOCKET: agent.socket };
  const e2e = await measure(Math.min(N, 50), async () => {
    await Bun.spawn([...cli, "-c", "true"], { cwd: proj, env, stdout: "ignore", stderr: "ignore" }).exited;
  }, 3);
  const ef = figure("substrate -c true (end to end)", e2e, { baseline: "bare spawn", ratio: 0 });
  ef.ratio = ef.median_ms / bareFig.median_ms;
  report(ef);
  const ver = await measure(Math.min(N, 50), async () => {
    await Bun.spawn([...cli, "--version"], { stdout: "ignore" }).exited;
  }, 3);
  report(figure("substrate --version (binary startup)", ver));
} finally {
  await agent.stop();
  rmSync(proj, { recursive: true, force: true });
}
