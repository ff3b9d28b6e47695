/**
 * `substrate world verify` against a real agent on a private socket (root, this host).
 * It must pass where the guarantees hold and must FAIL where one is legitimately absent:
 * a policy with `isolate_network: false` fails the network checks and exits non-zero —
 * without any connection attempt (the world shares the host network, so nothing is probed).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { VerifyReport } from "../../src/contract/index.ts";
import { DEFAULT_POLICY_YAML } from "../../src/broker/default-policy.ts";
import { startAgent, type TestAgent } from "../helpers/agent.ts";

const ROOT = resolve(import.meta.dir, "../..");
const CLI = [process.execPath, join(ROOT, "src/main.ts")];
let agent: TestAgent;
let dir: string;

function verify(home: string, extra: string[] = [], env: Record<string, string> = {}) {
  const p = Bun.spawnSync([...CLI, "world", "verify", ...extra], {
    cwd: dir,
    // A private TMPDIR: verify's throwaway project goes there, so the leak check below never
    // sees another suite's verify running at the same time.
    env: { PATH: process.env.PATH!, HOME: home, TMPDIR: join(dir, "tmp"), SUBSTRATE_WORLD_SOCKET: agent.socket, SUBSTRATE_TRACE: join(dir, "trace.jsonl"), ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

function homeWithPolicy(name: string, yaml: string | null): string {
  const home = join(dir, name);
  mkdirSync(join(home, ".substrate", "policies"), { recursive: true });
  if (yaml !== null) writeFileSync(join(home, ".substrate", "policies", "default.yaml"), yaml);
  return home;
}

const verifyDirs = () => readdirSync(join(dir, "tmp"));

beforeAll(async () => {
  agent = await startAgent();
  dir = mkdtempSync(join(tmpdir(), "substrate-verify-it-"));
  mkdirSync(join(dir, "tmp"));
});
afterAll(async () => {
  await agent.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("substrate world verify", () => {
  test("the built-in policy: every guarantee holds on this host (exit 0), doctor text format", async () => {
    const r = verify(homeWithPolicy("h-default", null));
    const lines = r.out.trimEnd().split("\n");
    expect(lines[0]).toBe("== substrate world verify ==");
    for (const l of lines.slice(1)) expect(l).toMatch(/^(PASS|WARN|FAIL|INFO) {2}\| /);
    expect(r.out).not.toContain("FAIL  | ");
    expect(r.code).toBe(0);
    for (const label of ["project writable", "system read-only", "writes outside project denied", "host processes invisible", "own network namespace", "non-allowlisted egress refused", "IPv6 dropped", "seccomp + no_new_privs", "Landlock", "cgroup limits", "mount denied (isolated)", "overlay diff captured"])
      expect(r.out).toMatch(new RegExp(`^PASS  \\| ${label.replace(/[()+]/g, "\\$&")}: `, "m"));
    // The throwaway project and its world are gone.
    expect(verifyDirs()).toEqual([]);
    // Its session world is gone. (An isolated spare the agent's pool may pre-warm for the
    // project after verify's cleanup is the pool's to expire: not asserted here.)
    expect((await agent.client.listWorlds()).filter((w) => w.project_dir.includes("substrate-verify-") && !w.isolated)).toEqual([]);
  }, 120_000);

  test("a policy with isolate_network: false FAILS own netns, egress and IPv6 (exit 4), without probing", () => {
    const yaml = DEFAULT_POLICY_YAML.replace("isolate_network: true", "isolate_network: false");
    expect(yaml).toContain("isolate_network: false");
    const r = verify(homeWithPolicy("h-open", yaml), ["--json"]);
    expect(r.code).toBe(4);
    const v = VerifyReport.parse(JSON.parse(r.out));
    expect(v.ok).toBe(false);
    expect(v.spec.isolate_network).toBe(false);
    const by = Object.fromEntries(v.checks.map((c) => [c.id, c]));
    expect(by.own_network_namespace!.status).toBe("fail");
    expect(by.own_network_namespace!.detail).toContain("shares the host network namespace");
    expect(by.egress_refused!.status).toBe("fail");
    expect(by.egress_refused!.detail).toContain("not probed");
    expect(by.ipv6_dropped!.status).toBe("fail");
    expect(by.egress_refused!.fix).toContain("isolate_network: true");
    // The rest still holds: the failure is exactly the absent guarantee.
    for (const id of ["project_writable", "system_read_only", "outside_project_denied", "host_processes_invisible", "seccomp_no_new_privs", "landlock", "mount_denied_isolated", "overlay_diff_captured"])
      expect(`${id}=${by[id]!.status}`).toBe(`${id}=pass`);
  }, 120_000);

  test("config.toml world.isolate_network = false fails the same way (text: FAIL + fix lines)", () => {
    const home = homeWithPolicy("h-config", null);
    writeFileSync(join(home, ".substrate", "config.toml"), "[world]\nisolate_network = false\n");
    const r = verify(home);
    expect(r.code).toBe(4);
    expect(r.out).toContain("FAIL  | own network namespace: the world shares the host network namespace");
    expect(r.out).toMatch(/FAIL {2}\| non-allowlisted egress refused: .*\nINFO {2}\| fix: /);
    expect(r.out).toContain("INFO  | 3 of 12 guarantees FAILED");
  }, 120_000);

  test("no agent: exit 3 with the next step, no stack trace", () => {
    const r = verify(homeWithPolicy("h-none", null), [], { SUBSTRATE_WORLD_SOCKET: join(dir, "nobody.sock") });
    expect(r.code).toBe(3);
    expect(r.err).toContain("hint:");
    expect(r.err).toContain("substrate world warm");
    expect(r.err).not.toContain("    at ");
  }, 60_000);

  test("world disabled: exit 4, nothing to verify", () => {
    const r = verify(homeWithPolicy("h-off", null), [], { SUBSTRATE_WORLD: "disabled" });
    expect(r.code).toBe(4);
    expect(r.err).toContain("world isolation is disabled");
  }, 60_000);
});
