/** docs/policy.json is generated from the zod schema and must be committed up to date; it keeps the spec's content. */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { policyJsonSchema, SCHEMA_FILE } from "../../../scripts/gen-policy-schema.ts";

test("docs/policy.json is up to date (run: bun scripts/gen-policy-schema.ts)", () => {
  expect(readFileSync(SCHEMA_FILE, "utf8")).toBe(policyJsonSchema());
});

test("it carries the spec's schema: draft-07, required id+name, id pattern, enums, limits patterns", () => {
  const s = JSON.parse(readFileSync(SCHEMA_FILE, "utf8"));
  expect(s.$schema).toBe("http://json-schema.org/draft-07/schema#");
  expect(s.type).toBe("object");
  expect(s.required).toEqual(["id", "name"]);
  expect(s.properties.id.pattern).toBe("^[a-z0-9-]+$");
  expect(s.properties.mode.enum).toEqual(["observe", "enforce"]);
  expect(s.properties.mode.default).toBe("observe");
  for (const k of ["read", "write"]) expect(s.properties.fs.properties[k].items.type).toBe("string");
  expect(Object.keys(s.properties.net.properties.egress_budget.properties)).toEqual(["bytes_per_sec", "total_bytes"]);
  expect(s.properties.net.properties.egress_budget.properties.total_bytes.type).toBe("integer");
  for (const k of ["allowed", "denied", "isolated"]) expect(s.properties.commands.properties[k].type).toBe("array");
  expect(s.properties.world.properties.reuse_session.default).toBe(true);
  expect(s.properties.world.properties.enable_preload.default).toBe(false);
  expect(s.properties.world.properties.isolate_network.default).toBe(true);
  expect(s.properties.world.properties.limits.properties.cpu.pattern).toBe("^[0-9]+(\\.[0-9]+)?$");
  expect(s.properties.world.properties.limits.properties.memory.pattern).toBe("^[0-9]+(Ki|Mi|Gi)$");
  expect(s.properties.approval.properties.interactive.default).toBe(true);
  expect(s.properties.approval.properties.auto_approve.items.type).toBe("string");
});
