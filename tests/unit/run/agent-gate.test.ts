/** The agent-side gate: the pipeline's decision and world for a request that did not pass the host. */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiError } from "../../../src/api/service.ts";
import { DEFAULT_POLICY_YAML } from "../../../src/broker/default-policy.ts";
import { agentGate } from "../../../src/run/agent-gate.ts";

const dir = mkdtempSync(join(tmpdir(), "substrate-agent-gate-"));
const home = join(dir, "home");
const proj = join(dir, "proj");
mkdirSync(join(home, ".substrate", "policies"), { recursive: true });
mkdirSync(join(proj, ".git"), { recursive: true });
writeFileSync(
  join(home, ".substrate", "policies", "default.yaml"),
  DEFAULT_POLICY_YAML.replace(/^mode: observe.*$/m, "mode: enforce").replace('memory: "2Gi" # 2 GB RAM', 'memory: "1536Mi"'),
);
process.env.SUBSTRATE_TRACE = join(dir, "trace.jsonl");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("agentGate", () => {
  test("denied → ApiError denied (403), whatever world the caller asked for", async () => {
    const e = await agentGate({ cmd: "sudo id", cwd: proj }, { home }).catch((x) => x);
    expect(e).toBeInstanceOf(ApiError);
    expect((e as ApiError).code).toBe("denied");
  });
  test("allowed → the policy's world (limits, allowlist), not the caller's block", async () => {
    const r = await agentGate({ cmd: "echo ok", cwd: proj, world: { project_dir: proj, limits: { memory: "64Gi" }, allowed_domains: ["*"] } }, { home });
    expect(r.request.world).toMatchObject({ project_dir: proj, limits: { cpu: "2", memory: "1536Mi" } });
    expect(r.request.world.allowed_domains).toContain("github.com");
    expect(r.request.world.allowed_domains).not.toContain("*");
  });
  test("commands.isolated → isolated; a caller may only make its world stricter", async () => {
    const r = await agentGate({ cmd: "npm install left-pad", cwd: proj, world: { reuse_session: false, isolate_network: true } }, { home });
    expect(r.request.isolated).toBe(true);
    expect(r.request.world).toMatchObject({ reuse_session: false, isolate_network: true });
  });
});
