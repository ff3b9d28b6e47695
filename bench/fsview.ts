#!/usr/bin/env bun
/**
 * Issue 13 (FSVIEW): what the policy's filesystem view costs, same run, same machine:
 *   - world creation (World.create until the spawner is ready, baseline hardening, no netns)
 *     with an empty view and no caller (≈ the layout before the fs view: system dirs, project,
 *     scratch) vs the default policy's view for a caller (fs.read /**: every top-level dir; the
 *     home read-only; ~/.cache ~/.npm ~/.cargo writable binds resolved as the caller; the
 *     secrets list hidden; the always-read-only project paths);
 *   - a warm exec (/bin/true) in each: the view must not touch the per-command path.
 * The caller is uid 0 with a throwaway home (nothing is created in the real /root).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { AGENT_BIN } from "../tests/helpers/agent.ts";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { World } from "../agent/world/session.ts";
import { DEFAULT_DENY_READ, WorldSpec, type Caller } from "../src/contract/world.ts";
import { figure, measure, report } from "./_stats.ts";

const N = Number(process.env.BENCH_N ?? 20);
const NX = Number(process.env.BENCH_EXEC_N ?? 200);
const base = mkdtempSync(join(tmpdir(), "substrate-bench-fsview-"));
const proj = join(base, "proj");
const home = join(base, "home");
const state = join(base, "state");
for (const d of [proj, join(proj, ".git/hooks"), home, join(home, ".ssh"), join(home, ".aws"), join(home, ".config/gcloud"), state]) mkdirSync(d, { recursive: true });
writeFileSync(join(proj, ".git/config"), "[core]\n");
writeFileSync(join(home, ".ssh/id_ed25519"), "x");
writeFileSync(join(home, ".netrc"), "x");
// The compiled agent when `make build-native` made one (what users run), else the source.
const selfArgv = existsSync(AGENT_BIN) ? [AGENT_BIN] : [process.execPath, join(import.meta.dir, "../agent/main.ts")];
const caller: Caller = { uid: 0, gid: 0, groups: [0], name: "root", home, shell: "/bin/bash" };

const variants = {
  before: { spec: WorldSpec.parse({ project_dir: proj, isolate_network: false, fs_view: { read: [], write: [], deny_read: [], read_only: [] } }), caller: undefined },
  view: {
    spec: WorldSpec.parse({
      project_dir: proj,
      isolate_network: false,
      fs_view: { read: ["/**"], write: ["$PROJECT/**", "/tmp/**", "$HOME/.cache/**", "$HOME/.npm/**", "$HOME/.cargo/**"], deny_read: [...DEFAULT_DENY_READ], read_only: [] },
    }),
    caller,
  },
} as const;

const create = (v: (typeof variants)[keyof typeof variants]) =>
  World.create({ spec: v.spec, stateDir: state, selfArgv, harden: { mode: "baseline", landlock: true }, ...(v.caller ? { caller: v.caller } : {}) });

// Creation: alternate the two so load drifts hit both alike.
const times: Record<string, number[]> = { before: [], view: [] };
for (let i = 0; i < N + 2; i++) {
  for (const k of ["before", "view"] as const) {
    const t = performance.now();
    const w = await create(variants[k]);
    const ms = performance.now() - t;
    await w.destroy();
    if (i >= 2) times[k]!.push(ms); // two warm-up rounds
  }
}
const before = figure("world creation, no fs view (before)", times.before!.sort((a, b) => a - b));
report(before);
const withView = figure("world creation, default policy's fs view", times.view!.sort((a, b) => a - b), { baseline: "no fs view", ratio: 0 });
withView.ratio = withView.median_ms / before.median_ms;
report(withView);
console.log(`  fs view adds ${(withView.median_ms - before.median_ms).toFixed(2)} ms to a world's creation (median)`);

// Warm exec in each, interleaved in rounds of 20 so load drifts hit both alike.
const ws = { before: await create(variants.before), view: await create(variants.view) };
const ex: Record<string, number[]> = { before: [], view: [] };
try {
  for (let r = 0; r < NX / 20; r++)
    for (const k of ["before", "view"] as const)
      ex[k]!.push(...(await measure(20, () => ws[k].spawn({ argv: ["/bin/true"], cwd: proj, env: { PATH: "/usr/bin:/bin" } }).exited, r === 0 ? 10 : 0)));
} finally {
  await ws.before.destroy();
  await ws.view.destroy();
}
const wb = figure("warm exec /bin/true, no fs view", ex.before!.sort((a, b) => a - b));
report(wb);
const wv = figure("warm exec /bin/true, fs view", ex.view!.sort((a, b) => a - b), { baseline: "no fs view" });
wv.ratio = wv.median_ms / wb.median_ms;
report(wv);
// The mounts themselves: buildRootfs alone, in a throwaway mount namespace per sample
// (bench/_fsview-child.ts), so the spawner's two Bun starts do not drown the difference.
const child = join(import.meta.dir, "_fsview-child.ts");
const buildMs = async (k: keyof typeof variants): Promise<number> => {
  const root = mkdtempSync(join(base, "root-"));
  const cfg = { root, project: proj, ...(variants[k].caller ? { caller: variants[k].caller } : {}), fsView: variants[k].spec.fs_view };
  const p = Bun.spawn(["unshare", "--mount", "--propagation", "private", "--", process.execPath, child, JSON.stringify(cfg)], { stdout: "pipe", stderr: "pipe" });
  const out = await new Response(p.stdout).text();
  if ((await p.exited) !== 0) throw new Error(`buildRootfs child: ${await new Response(p.stderr).text()}`);
  rmSync(root, { recursive: true, force: true });
  return (JSON.parse(out.trim()) as { ms: number }).ms;
};
const b: Record<string, number[]> = { before: [], view: [] };
for (let i = 0; i < N + 2; i++) for (const k of ["before", "view"] as const) {
  const ms = await buildMs(k);
  if (i >= 2) b[k]!.push(ms);
}
const bb = figure("buildRootfs alone, no fs view", b.before!.sort((x, y) => x - y));
report(bb);
const bv = figure("buildRootfs alone, default policy's fs view", b.view!.sort((x, y) => x - y), { baseline: "no fs view" });
bv.ratio = bv.median_ms / bb.median_ms;
report(bv);
console.log(`  the fs view's mounts cost ${(bv.median_ms - bb.median_ms).toFixed(2)} ms per world (median)`);

rmSync(base, { recursive: true, force: true });
