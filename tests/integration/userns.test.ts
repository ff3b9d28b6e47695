/**
 * User namespace for real: world root is uid 0 inside, the project owner (or a subordinate
 * id) outside; it can write the project and nothing owned by host root.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { prepareIdMapHelpers, subordinateRange, userNamespaceSupport, worldIdMap } from "../../agent/world/userns.ts";
import { runnable, runnableBun } from "../helpers/runnable.ts";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "substrate-userns-"));
  chmodSync(dir, 0o755); // the project owner must be able to reach its project
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("support detection reports the knobs and proves it with unshare", () => {
  const s = userNamespaceSupport();
  expect(s.sysctls).toHaveProperty("max_user_namespaces");
  if (s.sysctls.max_user_namespaces === 0) expect(s).toMatchObject({ available: false, reason: expect.stringContaining("max_user_namespaces") });
  else expect(s.available).toBe(true); // the agent runs as root here
});

test("subordinate ranges: /etc/subuid format, by name or id; missing entry is null", () => {
  const f = join(dir, "subuid");
  writeFileSync(f, "alice:100000:65536\n0:200000:1000\nbroken:x:y\n");
  expect(subordinateRange("alice", f)).toEqual({ start: 100000, count: 65536 });
  expect(subordinateRange("0", f)).toEqual({ start: 200000, count: 1000 });
  expect(subordinateRange("root", f)).toBeNull();
  expect(subordinateRange("broken", f)).toBeNull();
  expect(subordinateRange("root", join(dir, "absent"))).toBeNull();
});

test("map: world root = project owner; others from the subordinate range; root-owned project warns", () => {
  const p = join(dir, "owned");
  mkdirSync(p);
  chownSync(p, 1000, 1000);
  const m = worldIdMap(p, { subuid: { start: 100000, count: 65536 }, subgid: { start: 100000, count: 65536 } });
  expect(m.uid).toEqual([{ inside: 0, outside: 1000, count: 1 }, { inside: 1, outside: 100000, count: 65535 }]);
  expect(m.rootUid).toBe(1000);
  expect(m.warnings).toEqual([]);
  const r = join(dir, "rootowned");
  mkdirSync(r);
  const m2 = worldIdMap(r, { subuid: { start: 100000, count: 65536 }, subgid: { start: 100000, count: 65536 } });
  expect(m2.uid).toEqual([{ inside: 0, outside: 100000, count: 65536 }]);
  expect(m2.warnings[0]).toContain("read-only");
});

describe.if(userNamespaceSupport().available)("a real world user namespace", () => {
  test("root in the world writes the project as its owner and cannot write host-root files", async () => {
    const project = join(dir, "project");
    const hostOnly = join(dir, "hostonly");
    mkdirSync(project);
    chownSync(project, 1000, 1000);
    mkdirSync(hostOnly); // root:root 0755
    writeFileSync(join(hostOnly, "file"), "host\n"); // root:root 0644
    const map = worldIdMap(project, { subuid: { start: 100000, count: 65536 }, subgid: { start: 100000, count: 65536 } });
    const script = [
      "id -u",
      `touch ${project}/created && echo project-ok`,
      `(echo x > ${hostOnly}/file) 2>/dev/null && echo host-file-WRITTEN || echo host-file-denied`,
      `(touch ${hostOnly}/new) 2>/dev/null && echo host-dir-WRITTEN || echo host-dir-denied`,
      "grep CapEff /proc/self/status",
      "cat /proc/self/uid_map",
    ].join("; ");
    const h = prepareIdMapHelpers(join(dir, "helpers"), map);
    const p = Bun.spawn(["unshare", ...h.unshareArgs, "--mount", "--pid", "--fork", "--kill-child", "--", "/bin/sh", "-c", script], {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, PATH: h.env.PATH },
    });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    expect(err).toBe("");
    expect(code).toBe(0);
    expect(out.split("\n").slice(0, 4)).toEqual(["0", "project-ok", "host-file-denied", "host-dir-denied"]);
    expect(out).toMatch(/^\s*0\s+1000\s+1$/m);
    expect(out).toMatch(/^\s*1\s+100000\s+65535$/m);
    expect(out).toContain("CapEff:"); // root in the world keeps its (namespaced) capabilities:
    expect(out).not.toMatch(/CapEff:\s*0+$/m);
    const st = statSync(join(project, "created"));
    expect([st.uid, st.gid]).toEqual([1000, 1000]); // the user's file on the host
    h.remove();
    expect(existsSync(join(dir, "helpers"))).toBe(false);
  });

  test("hardenSelf works inside the user namespace (what the spawner does after pivot_root)", () => {
    const base = join(dir, "harden");
    mkdirSync(join(base, "rw"), { recursive: true });
    mkdirSync(join(base, "mnt"));
    chmodSync(base, 0o755);
    chownSync(join(base, "rw"), 1000, 1000);
    const h = prepareIdMapHelpers(join(dir, "helpers2"), worldIdMap(join(base, "rw")));
    const cfg = {
      opts: { mode: "isolated", landlock: { rw: [join(base, "rw")] } },
      rwDir: join(base, "rw"),
      outsideFile: join(base, "outside"),
      mountTarget: join(base, "mnt"),
    };
    const child = join(import.meta.dir, "fixtures", "harden-child.ts");
    const p = Bun.spawnSync(
      ["unshare", ...h.unshareArgs, "--mount", "--pid", "--fork", "--kill-child", "--", runnableBun(), runnable(child, false), JSON.stringify(cfg)],
      { env: { ...process.env, PATH: h.env.PATH } },
    );
    h.remove();
    expect(p.stderr.toString()).toBe("");
    const { report, probes } = JSON.parse(p.stdout.toString());
    expect(report.degraded).toEqual([]);
    expect(probes.self).toMatchObject({ NoNewPrivs: "1", Seccomp: "2" });
    expect(probes.write_inside).toBe("ok");
    expect(probes.write_outside).toBe("EACCES");
    expect(probes.mount_ffi).toBe(1);
    expect(probes.bun_serve).toBe("served");
  });
});
