/** Pure parts of issue 6: budget semantics, rate limiter, OSC tap, traceparent, error mapping. */
import { expect, test } from "bun:test";
import { BudgetExceeded, BudgetTracker } from "../../../src/api/budget.ts";
import { RateLimiter } from "../../../src/proxy/ratelimit.ts";
import { OscTap, PROMPT_HOOK } from "../../../src/cli/shell.ts";
import { nextTraceparent, isLoopback } from "../../../src/proxy/server.ts";
import { errorFrom } from "../../../src/proxy/forward.ts";
import { RingBuffer } from "../../../agent/stream.ts";
import { exitForError } from "../../../src/cli/_pty.ts";

test("budget: first budget sets, later ones only tighten; no budget = unlimited", () => {
  const t = new BudgetTracker();
  expect(t.acquire("free").timeoutMs).toBeUndefined();
  expect(t.status("free")).toBeUndefined();
  t.acquire("a", { max_execs: 3 }).settle(1);
  t.acquire("a", { max_execs: 10 }).settle(1); // loosening ignored
  t.acquire("a", { max_execs: 3, max_runtime_ms: 1000 }).settle(1); // a new limit is added
  expect(t.status("a")!.budget).toEqual({ max_execs: 3, max_runtime_ms: 1000 });
  const e = (() => {
    try {
      t.acquire("a");
    } catch (x) {
      return x as BudgetExceeded;
    }
  })();
  expect(e).toBeInstanceOf(BudgetExceeded);
  expect(e!.code).toBe("rate_limited");
  expect(e!.limit).toBe("max_execs");
});

test("budget: runtime is a total; each command may use what is left; settle charges once", () => {
  const t = new BudgetTracker();
  const l1 = t.acquire("r", { max_runtime_ms: 1000 });
  expect(l1.timeoutMs).toBe(1000);
  l1.settle(600);
  l1.settle(600); // idempotent
  const l2 = t.acquire("r");
  expect(l2.timeoutMs).toBe(400);
  l2.settle(450);
  expect(() => t.acquire("r")).toThrow("max_runtime_ms (1050 of 1000 used)");
  expect(t.status("r")!.exhausted).toEqual(["max_runtime_ms"]);
});

test("budget: egress hook spends max_egress_bytes", () => {
  const t = new BudgetTracker();
  t.acquire("e", { max_egress_bytes: 100 }).settle(0);
  t.recordEgress("e", 60);
  t.acquire("e").settle(0);
  t.recordEgress("e", 60);
  expect(() => t.acquire("e")).toThrow("max_egress_bytes (120 of 100 used)");
  t.recordEgress("nobody", 5); // agents without a budget are not tracked
  expect(t.status("nobody")).toBeUndefined();
});

test("rate limiter: burst, then refill over time, per key", () => {
  const r = new RateLimiter({ ratePerSec: 10, burst: 2 });
  expect(r.take("a", 0)).toBe(0);
  expect(r.take("a", 0)).toBe(0);
  expect(r.take("a", 0)).toBeCloseTo(100, 5); // one token in 100 ms
  expect(r.take("b", 0)).toBe(0);
  expect(r.take("a", 100)).toBe(0);
});

test("OscTap strips markers split across chunks and passes everything else through", () => {
  const got: string[] = [];
  const tap = new OscTap((p) => got.push(p));
  const enc = (s: string) => Buffer.from(s, "latin1");
  const out = [tap.push(enc("hello \x1b]69")), tap.push(enc("73;Y2Q=;L3RtcA==\x07world \x1b[1m")), tap.push(enc("bold\x1b"))];
  expect(Buffer.concat(out).toString("latin1")).toBe("hello world \x1b[1mbold");
  expect(got).toEqual(["Y2Q=;L3RtcA=="]);
  expect(tap.push(enc("]0;title\x07")).toString("latin1")).toBe("\x1b]0;title\x07"); // other OSC untouched
});

test("PROMPT_HOOK parses as bash (its behaviour: stream-cli.test.ts)", async () => {
  const p = Bun.spawnSync(["bash", "-n", "-c", PROMPT_HOOK]);
  expect(p.exitCode).toBe(0);
});

test("traceparent: keep the caller's trace id, new parent; garbage starts a new trace", () => {
  const tp = nextTraceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  expect(tp).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
  expect(tp.slice(36, 52)).not.toBe("b7ad6b7169203331");
  expect(nextTraceparent("00-00000000000000000000000000000000-b7ad6b7169203331-01").slice(3, 35)).not.toBe("0".repeat(32));
  expect(nextTraceparent(undefined)).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  expect(isLoopback("127.0.0.1") && isLoopback("::1") && isLoopback("127.1.2.3")).toBe(true);
  expect(isLoopback("0.0.0.0") || isLoopback("10.0.0.1") || isLoopback("localhost")).toBe(false);
});

test("proxy error mapping keeps code, message, hint and extra fields", () => {
  const e = errorFrom(409, { error: { code: "approval_required", message: "m", hint: "h" }, approval: { x: 1 } });
  expect([e.code, e.message, e.hint, e.extra]).toEqual(["approval_required", "m", "h", { approval: { x: 1 } }]);
  expect(errorFrom(502, "nope").code).toBe("internal");
  expect(errorFrom(400, { error: { code: "made_up", message: "m" } }).code).toBe("internal");
});

test("ring buffer keeps the last N bytes and says when it dropped some", () => {
  const r = new RingBuffer(8);
  r.push(Buffer.from("abcdef"));
  expect(r.truncated).toBe(false);
  r.push(Buffer.from("ghij"));
  expect(r.contents().toString()).toBe("cdefghij");
  expect(r.truncated).toBe(true);
  r.push(Buffer.from("0123456789AB"));
  expect(r.contents().toString()).toBe("456789AB");
});

test("stream errors map to the exit code taxonomy", () => {
  expect([exitForError("bad_request"), exitForError("denied"), exitForError("unavailable"), exitForError("unsupported"), exitForError("rate_limited")]).toEqual([2, 126, 3, 4, 1]);
});
