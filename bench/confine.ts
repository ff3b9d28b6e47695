/**
 * Per-world cost of the host-side setup (confineWorld: cgroup create + destroy) and of the
 * cgroup-entering argv prefix, against a bare `unshare --mount --pid --fork true` measured in
 * the same run. Prints figures, never fails on time.
 *
 *   node_modules/.bin/bun bench/confine.ts [runs=20]
 */
import { removeCgroupBaseIfEmpty } from "../agent/world/cgroups.ts";
import { confineWorld } from "../agent/world/confine.ts";

const RUNS = Number(process.argv[2] ?? 20);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const unshare = ["unshare", "--mount", "--pid", "--fork", "true"];
const bare: number[] = [];
const withPrefix: number[] = [];
const create: number[] = [];
const destroy: number[] = [];
for (let i = 0; i < RUNS; i++) {
  let t = performance.now();
  const c = await confineWorld({ worldId: `wld_bench-${process.pid}-${i}`, limits: { memory: "1Gi", cpu: "1" }, projectDir: "/tmp", userns: false });
  create.push(performance.now() - t);
  t = performance.now();
  Bun.spawnSync(unshare);
  bare.push(performance.now() - t);
  t = performance.now();
  Bun.spawnSync([...c.argvPrefix, ...unshare]);
  withPrefix.push(performance.now() - t);
  t = performance.now();
  await c.destroy();
  destroy.push(performance.now() - t);
}
removeCgroupBaseIfEmpty();
const f = (xs: number[]) => median(xs).toFixed(2);
console.log(`confineWorld, median of ${RUNS} (ms): create ${f(create)}, destroy ${f(destroy)}`);
console.log(`unshare bare ${f(bare)}, with cgroup prefix ${f(withPrefix)} (+${(median(withPrefix) - median(bare)).toFixed(2)}, ${(median(withPrefix) / median(bare)).toFixed(2)}x)`);
