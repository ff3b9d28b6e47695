/**
 * One span context, one id format: the span-id regex and `ses_` minting live only in
 * src/contract/ids.ts, and SUBSTRATE_SESSION_ID / SUBSTRATE_SPAN_ID are read only by
 * src/trace/span.ts (the named exceptions below each have an owner; remove them when fixed).
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { Glob } from "bun";
import { SpanContext } from "../../../src/trace/span.ts";
import { isSpanId, newSessionId, newSpanId, SESSION_ID_RE } from "../../../src/contract/ids.ts";

const ROOT = join(import.meta.dir, "../../..");
const sources = [...new Glob("{src,agent}/**/*.ts").scanSync(ROOT)].map((f) => ({ f, text: readFileSync(join(ROOT, f), "utf8") }));

const ENV_READERS_ALLOWED = new Set([
  "src/trace/span.ts",
  "src/broker/decide.ts", // BROKER: decideForCli's fallback when no sessionId is passed (the pipeline passes it)
  "src/cli/bash.ts", // AGENTS: a presence check (inside a traced command), not an id read
  "agent/egress/world.ts", // EGRESS: names the gateway's command by the request's span (should take it from the agent's span context)
]);

test("the span-id regex and ses_ minting exist only in src/contract/ids.ts", () => {
  const bad = sources.filter(({ f, text }) => f !== "src/contract/ids.ts" && (/spn_\[0-9a-f-\]\{36\}/.test(text) || /`ses_\$\{/.test(text))).map((s) => s.f);
  expect(bad).toEqual([]);
});

test("SUBSTRATE_SESSION_ID / SUBSTRATE_SPAN_ID are read only through the span context", () => {
  const bad = sources.filter(({ f, text }) => !ENV_READERS_ALLOWED.has(f) && /env\.SUBSTRATE_(SESSION|SPAN)_ID\b|env\[["']SUBSTRATE_(SESSION|SPAN)_ID["']\]/.test(text)).map((s) => s.f);
  expect(bad).toEqual([]);
});

test("SpanContext: an outer session and parent are inherited; an invalid parent is ignored; one own session per process", () => {
  const outer = newSessionId();
  const parent = newSpanId();
  const c = SpanContext.fromEnv({ SUBSTRATE_SESSION_ID: outer, SUBSTRATE_SPAN_ID: parent });
  expect(c.session_id).toBe(outer);
  expect(c.parent_span).toBe(parent);
  expect(SpanContext.fromEnv({ SUBSTRATE_SPAN_ID: "spn_not-a-uuid" }).parent_span).toBeUndefined();
  const own = SpanContext.fromEnv({}).session_id;
  expect(own).toMatch(SESSION_ID_RE);
  expect(SpanContext.fromEnv({}).session_id).toBe(own);
  const child = c.child(newSpanId());
  expect(child.session_id).toBe(outer);
  expect(isSpanId(child.parent_span)).toBe(true);
  expect(c.envFor("spn_x")).toEqual({ SUBSTRATE_SPAN_ID: "spn_x", SUBSTRATE_SESSION_ID: outer });
});
