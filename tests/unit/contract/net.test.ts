/** Round trips for the world network (egress) schemas (src/contract/net.ts). */
import { expect, test } from "bun:test";

function roundTrip<T>(schema: { parse: (x: unknown) => T }, value: unknown): T {
  const a = schema.parse(value);
  const json = JSON.stringify(a);
  expect(schema.parse(JSON.parse(json))).toEqual(a);
  return a;
}

// Issue 15: egress gateway schemas.
import { EgressBlocked, EgressEvent, EgressSpec, EgressSummary } from "../../../src/contract/net.ts";

test("EgressEvent / EgressSummary / EgressSpec round-trip; strict", () => {
  const ev = {
    world_id: "wld_x",
    name: "example.org",
    port: 443,
    via: "transparent",
    decision: "deny",
    reason: "not_allowed",
    message: "example.org:443 is not in net.allowed of policy default",
    bytes_up: 0,
    bytes_down: 0,
    duration_ms: 0.5,
    command_span_id: "spn_x",
    pid: 42,
    exe: "/usr/bin/curl",
    policy_id: "default",
  };
  roundTrip(EgressEvent, ev);
  roundTrip(EgressEvent, { ...ev, decision: "allow", reason: "allowed", addr: "93.184.215.14", bytes_up: 10, bytes_down: 20 });
  expect(() => EgressEvent.parse({ ...ev, decision: "maybe" })).toThrow();
  expect(() => EgressEvent.parse({ ...ev, extra: 1 })).toThrow();
  const b = { name: "example.org", port: 443, reason: "not_allowed", policy_id: "default", message: ev.message };
  roundTrip(EgressBlocked, b);
  roundTrip(EgressSummary, { bytes_up: 1, bytes_down: 2, connections: 1, blocked: [b] });
  roundTrip(EgressSpec, { policy_id: "default", total_bytes: 10, bytes_per_sec: 5 });
  expect(() => EgressSpec.parse({ bytes_per_sec: 0 })).toThrow();
});

test("the execute result and the stream's exit frame carry the egress summary (additive)", async () => {
  const { StreamExit } = await import("../../../src/contract/stream.ts");
  const { ExecuteResponse } = await import("../../../src/contract/execute.ts");
  const egress = { bytes_up: 1, bytes_down: 2, connections: 1, blocked: [{ name: "x.test", port: 443, reason: "not_allowed", message: "m" }] };
  roundTrip(StreamExit, { type: "exit", code: 0, signal: null, egress });
  roundTrip(StreamExit, { type: "exit", code: 0, signal: null });
  const r = { exit: 0, span_id: "spn_01890a5d-ac96-774b-bcce-b302099a8057", stdout_b64: "", stderr_b64: "", scopes_used: [], world_id: "wld_01890a5d-ac96-774b-bcce-b302099a8057" };
  const parsed = ExecuteResponse.safeParse({ ...r, egress });
  if (parsed.success) roundTrip(ExecuteResponse, { ...r, egress });
  else expect(parsed.error.issues.every((i) => i.path[0] !== "egress")).toBe(true); // id formats are not this test's business
});
