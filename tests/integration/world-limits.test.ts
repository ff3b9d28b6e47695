/**
 * The host-side and spawner-side pieces composed the way a world uses them:
 *   host:    confineWorld() → [...argvPrefix, "unshare", ...unshareArgs, --mount --pid --fork ...]
 *   inside:  protectFromOom() → hardenSelf() → commands via guard.unprotected(Bun.spawn)
 * A memory hog in such a world is OOM-killed; the spawner survives and reports it; the
 * world's cgroup is empty and removed at teardown.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { detectCgroupMode, removeCgroupBaseIfEmpty } from "../../agent/world/cgroups.ts";
import { confineWorld } from "../../agent/world/confine.ts";
import { userNamespaceSupport } from "../../agent/world/userns.ts";
import { runnable, runnableBun } from "../helpers/runnable.ts";

// Handed to the user namespace's root (uid 1000): from a mirror when the clone is not
// traversable by others (a 0700 home, tests/helpers/runnable.ts).
const SPAWNER = runnable(join(import.meta.dir, "fixtures", "limited-spawner.ts"), false);
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "substrate-wl-"));
  chmodSync(dir, 0o755);
});
afterAll(() => {
  removeCgroupBaseIfEmpty();
  rmSync(dir, { recursive: true, force: true });
});

describe.if(detectCgroupMode() !== "none")("a limited, hardened world", () => {
  for (const userns of [false, true]) {
    test.if(!userns || userNamespaceSupport().available)(`memory hog OOM-killed, spawner alive (user namespace: ${userns})`, async () => {
      const rw = join(dir, `rw-${userns}`);
      mkdirSync(rw);
      if (userns) chownSync(rw, 1000, 1000);
      const c = await confineWorld({
        worldId: `wld_wl-${process.pid}-${userns}`,
        limits: { memory: "256Mi", pids: 256 },
        projectDir: rw,
        userns,
        helperDir: join(dir, "idmap"),
      });
      expect(c.warnings).toEqual([]);
      expect(c.userns).toEqual(userns ? { rootUid: 1000, rootGid: 1000 } : null);
      const cg = c.cgroup!;
      try {
        const argv = [
          ...c.argvPrefix,
          "unshare",
          ...c.unshareArgs,
          "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child", "--",
          runnableBun(), SPAWNER,
          JSON.stringify({ rw, hog: "head -c 4G /dev/zero | tail -n 1 > /dev/null" }),
        ];
        const env = { ...process.env, ...c.env, ...(c.env.PATH ? { PATH: `${c.env.PATH}:${process.env.PATH}` } : {}) };
        const p = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe", env });
        const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
        expect(err).toBe("");
        expect(code).toBe(0);
        const r = JSON.parse(out);
        expect(r.degraded).toEqual([]);
        expect(r.alive).toBe(true);
        expect(r.hogExit).toBe(137);
        expect(r.selfAdj).toBe(r.self); // protection restored after each spawn, with caps dropped
        expect(r.childAdj).toBe(r.commands);
        expect(Number(r.commands)).toBeGreaterThan(Number(r.self));
        expect(r.uid).toBe("0");
        expect((await cg.stats()).oom_kills).toBeGreaterThanOrEqual(1);
      } finally {
        await c.destroy();
      }
      expect(existsSync(join(dir, "idmap"))).toBe(false);
      for (const p of cg.paths) expect(existsSync(p)).toBe(false);
    });
  }
});
