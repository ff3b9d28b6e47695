#!/usr/bin/env bun
/**
 * World exec overhead per mode, against bare spawn and bwrap measured in the same run:
 *   - World.spawn(/bin/true) in a warm world: no hardening / baseline (Landlock + seccomp log)
 *     / isolated (Landlock + seccomp EPERM): the per-command cost of each layer
 *   - /v1/execute isolated: a fresh overlay world per command, incl. teardown and fs diff
 * Goals (issue 3): session exec <= bare + 2 ms; isolated exec incl. diff <= 10 ms.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { World } from "../agent/world/session.ts";
import { WorldSpec } from "../src/contract/world.ts";
import { startAgent } from "../tests/helpers/agent.ts";
import { figure, measure, report } from "./_stats.ts";

const N = Number(process.env.BENCH_N ?? 200);
const proj = mkdtempSync(join(tmpdir(), "substrate-bench-world-"));
const state = mkdtempSync(join(tmpdir(), "substrate-bench-state-"));
const selfArgv = [process.execPath, join(import.meta.dir, "../agent/main.ts")];

const bare = figure("bare Bun.spawn(/bin/true)", await measure(N, () => Bun.spawn(["/bin/true"]).exited));
report(bare);
const rel = (f: ReturnType<typeof figure>, goal?: string) => ({ ...f, baseline: "bare spawn", ratio: f.median_ms / bare.median_ms, ...(goal ? { goal } : {}) });
if (Bun.which("bwrap"))
  report(rel(figure("bwrap --unshare-all --ro-bind / / /bin/true", await measure(N, () => Bun.spawn(["bwrap", "--unshare-all", "--ro-bind", "/", "/", "/bin/true"]).exited))));

for (const [label, harden] of [
  ["none", undefined],
  ["baseline (Landlock + seccomp log)", { mode: "baseline", landlock: true }],
  ["isolated (Landlock + seccomp EPERM)", { mode: "isolated", landlock: true }],
] as const) {
  const w = await World.create({
    spec: WorldSpec.parse({ project_dir: proj, isolate_network: false }),
    stateDir: state,
    selfArgv,
    ...(harden ? { harden } : {}),
  });
  try {
    const run = () => w.spawn({ argv: ["/bin/true"], cwd: proj, env: { PATH: "/usr/bin:/bin" } }).exited;
    const f = rel(figure(`world exec /bin/true, hardening: ${label}`, await measure(N, run)), "<= bare + 2 ms");
    report(f);
    console.log(`  overhead over bare spawn: ${(f.median_ms - bare.median_ms).toFixed(3)} ms`);
  } finally {
    await w.destroy();
  }
}

mkdirSync("/var/lib/substrate", { recursive: true });
const overlayBase = mkdtempSync("/var/lib/substrate/bench-overlay-");
const agent = await startAgent({ env: { SUBSTRATE_OVERLAY_DIR: overlayBase } });
try {
  const iso = async () => {
    const r = await agent.client.execute({ argv: ["/bin/true"], cwd: proj, agent_id: "bench", isolated: true, world: { isolate_network: false } });
    await agent.client.discardFsDiff(r.span_id);
  };
  report(rel(figure("isolated execute /bin/true incl. overlay world + diff (no netns)", await measure(Math.min(N, 30), iso, 2)), "<= 10 ms"));
  const isoNet = async () => {
    const r = await agent.client.execute({ argv: ["/bin/true"], cwd: proj, agent_id: "bench", isolated: true });
    await agent.client.discardFsDiff(r.span_id);
  };
  report(rel(figure("isolated execute /bin/true incl. world + netns/nft/dns + diff", await measure(Math.min(N, 20), isoNet, 2)), "<= 10 ms"));
  const caps = await agent.client.capabilities();
  console.log(`session reuse ratio after the run: ${caps.worlds.reuse_ratio.toFixed(3)} (isolated worlds are never reused)`);
} finally {
  await agent.stop();
  rmSync(overlayBase, { recursive: true, force: true });
  rmSync(proj, { recursive: true, force: true });
  rmSync(state, { recursive: true, force: true });
}
