/**
 * Cost of the privilege-reduction layers, paid once per world by the spawner:
 * - hardenSelf() itself (no_new_privs + Landlock + caps + seccomp), in fresh Bun processes;
 * - what the seccomp filter + Landlock add to every later command: Bun.spawnSync(/bin/true)
 *   and a small file-heavy shell command, measured in the SAME process before and after
 *   hardening (the baseline of the same run).
 * Prints figures, never fails on time.
 *
 *   node_modules/.bin/bun bench/harden.ts [runs=10]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const RUNS = Number(process.argv[2] ?? 10);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const child = join(import.meta.dir, "fixtures", "harden-bench-child.ts");
const dir = mkdtempSync(join(tmpdir(), "substrate-bench-harden-"));

try {
  type Series = { harden: number[]; trueBefore: number[]; trueAfter: number[]; shBefore: number[]; shAfter: number[] };
  const results: Record<string, Series> = {};
  for (const mode of ["baseline", "isolated"] as const) {
    const r: Series = { harden: [], trueBefore: [], trueAfter: [], shBefore: [], shAfter: [] };
    results[mode] = r;
    for (let i = 0; i < RUNS; i++) {
      const p = Bun.spawnSync([process.execPath, child, mode, dir], { stdout: "pipe", stderr: "inherit" });
      const o = JSON.parse(p.stdout.toString()) as Record<keyof Series, number>;
      for (const k of Object.keys(r) as (keyof Series)[]) r[k].push(o[k]);
    }
  }
  const f = (n: number) => n.toFixed(3).padStart(8);
  console.log(`hardenSelf and per-command overhead, median of ${RUNS} fresh processes (ms)`);
  console.log("mode       hardenSelf  /bin/true before  after  ratio   sh+20 files before  after  ratio");
  for (const [mode, r] of Object.entries(results)) {
    const tb = median(r.trueBefore), ta = median(r.trueAfter), sb = median(r.shBefore), sa = median(r.shAfter);
    console.log(
      `${mode.padEnd(9)} ${f(median(r.harden))}   ${f(tb)} ${f(ta)}  ${(ta / tb).toFixed(2)}x   ${f(sb)} ${f(sa)}  ${(sa / sb).toFixed(2)}x`,
    );
  }
  console.log("(a Bun helper re-exec per command would cost 7-12 ms instead; this is paid once per world)");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
