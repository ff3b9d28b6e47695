/** Per-command egress budgets in the gateway (agent/egress/gateway.ts CommandEgress). */
import { expect, test } from "bun:test";
import { CommandEgress } from "../../../agent/egress/gateway.ts";

test("total_bytes: counting past it says close, once a rate_limit; spent() refuses the next connection", () => {
  const limits: string[] = [];
  const c = new CommandEgress("spn_x", { total_bytes: 1000 }, (_c, why) => limits.push(why));
  expect(c.count("down", 600)).toBe(0);
  expect(c.spent()).toBe(false);
  expect(c.count("up", 400)).toBe(0); // exactly the budget: still fine
  expect(c.spent()).toBe(true);
  expect(c.count("down", 1)).toBe("close");
  expect(c.count("down", 1)).toBe("close");
  expect(limits).toHaveLength(1);
  expect(limits[0]).toContain("egress_budget.total_bytes (1000) spent");
  expect(c.summary()).toMatchObject({ bytes_up: 400, bytes_down: 602 });
});

test("bytes_per_sec: paced (a hold in ms), never closed", () => {
  const c = new CommandEgress(undefined, { bytes_per_sec: 1000 }, () => {});
  expect(c.count("down", 900)).toBe(0); // within the one-second burst
  const hold = c.count("down", 2000);
  expect(typeof hold).toBe("number");
  expect(hold as number).toBeGreaterThan(1000);
  expect(hold as number).toBeLessThanOrEqual(2000);
});

test("no budget: counts only", () => {
  const c = new CommandEgress(undefined, undefined, () => {});
  expect(c.count("up", 1 << 30)).toBe(0);
  expect(c.spent()).toBe(false);
});
