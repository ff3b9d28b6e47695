/**
 * bench/fsview.ts helper: builds ONE world root in this (already unshared) process and prints
 * how long buildRootfs took — the fs view's own cost, without the spawner's Bun starts.
 * argv[2]: JSON {root, project, caller?, fsView?}.
 */
import { buildRootfs } from "../agent/world/rootfs.ts";

const o = JSON.parse(process.argv[2]!);
const t = performance.now();
const r = buildRootfs(o);
const ms = performance.now() - t;
process.stdout.write(`${JSON.stringify({ ms, rw: r.rw.length, warnings: r.warnings })}\n`);
