/**
 * Generate docs/policy.json (JSON Schema draft-07) from the zod Policy schema, so the shipped
 * schema can never drift from what the broker validates. `--check` exits 1 when the committed
 * file is stale (tests/unit/broker/schema.test.ts runs the same comparison).
 *
 *   bun scripts/gen-policy-schema.ts [--check]
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { Policy } from "../src/contract/policy.ts";

export const SCHEMA_FILE = join(import.meta.dir, "..", "docs", "policy.json");

export function policyJsonSchema(): string {
  const schema = z.toJSONSchema(Policy, { target: "draft-7", io: "input" }) as Record<string, unknown>;
  const out = {
    $schema: schema.$schema,
    title: "Substrate policy",
    description: "~/.substrate/policies/<id>.yaml (or .toml). Generated from src/contract/policy.ts by scripts/gen-policy-schema.ts; see docs/POLICY.md.",
    ...Object.fromEntries(Object.entries(schema).filter(([k]) => k !== "$schema")),
  };
  return `${JSON.stringify(out, null, 2)}\n`;
}

if (import.meta.main) {
  const text = policyJsonSchema();
  if (process.argv.includes("--check")) {
    let cur = "";
    try {
      cur = readFileSync(SCHEMA_FILE, "utf8");
    } catch {}
    if (cur !== text) {
      console.error(`${SCHEMA_FILE} is out of date: run bun scripts/gen-policy-schema.ts`);
      process.exit(1);
    }
    console.log(`${SCHEMA_FILE} is up to date`);
  } else {
    writeFileSync(SCHEMA_FILE, text);
    console.log(`wrote ${SCHEMA_FILE}`);
  }
}
