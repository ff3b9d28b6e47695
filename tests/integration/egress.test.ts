/**
 * Egress accounting through the real agent: bytes a command sends out of its world (to a test
 * host in namespaces the test creates) land in its span's egress_bytes and are charged to the
 * agent's max_egress_bytes budget: once spent, the next execute is refused with 429.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentApiError } from "../../src/api/client.ts";
import { hostVethName } from "../../agent/world/net/index.ts";
import { createNetFixture, type NetFixture } from "./_net-fixture.ts";
import { b64, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

let fx: NetFixture;
let agent: TestAgent;
let proj: string;
let trace: string;

beforeAll(async () => {
  fx = await createNetFixture();
  await fx.setZone({ "allowed.test": { A: [fx.net(10)] } });
  trace = join(mkdtempSync(join(tmpdir(), "substrate-egress-")), "trace.jsonl");
  agent = await startAgent({ env: { SUBSTRATE_WORLD_DNS_UPSTREAM: fx.dnsIp, SUBSTRATE_TRACE: trace } });
  proj = tempProject();
}, 60_000);
afterAll(async () => {
  await agent?.stop();
  await fx?.close();
  rmSync(proj, { recursive: true, force: true });
  rmSync(join(trace, ".."), { recursive: true, force: true });
});

const world = () => ({ project_dir: proj, allowed_domains: ["allowed.test"] });

test("egress bytes are recorded in the span and spend the budget", async () => {
  // First execute builds the world; route its veth to the test hosts.
  const first = await agent.client.execute({ cmd: "true", cwd: proj, agent_id: "egress", world: world() });
  fx.allowForwarding(hostVethName(first.world_id));
  const budget = { max_egress_bytes: 100 };
  const r = await agent.client.execute({
    cmd: "curl -sS --max-time 10 --data-binary @- http://allowed.test/ >/dev/null; echo rc=$?",
    cwd: proj,
    agent_id: "egress",
    world: world(),
    budget,
    stdin_b64: Buffer.from("x".repeat(4000)).toString("base64"),
  });
  expect(b64(r.stdout_b64)).toBe("rc=0\n");
  const span = readFileSync(trace, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l))
    .find((s) => s.span_id === r.span_id && s.event_type === "command_complete");
  expect(span.egress_bytes).toBeGreaterThan(4000);
  // The budget is now spent: the next execute is refused before it runs.
  let status = 0;
  try {
    await agent.client.execute({ cmd: "echo should-not-run", cwd: proj, agent_id: "egress", world: world(), budget });
  } catch (e) {
    status = (e as AgentApiError).status;
  }
  expect(status).toBe(429);
}, 60_000);
