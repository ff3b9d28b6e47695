import { expect, test } from "bun:test";
import { parseCpuQuota, parseMemory } from "../../../agent/world/cgroups.ts";
import { ResourceLimits } from "../../../src/contract/world.ts";

test("memory sizes: binary and decimal suffixes, plain bytes", () => {
  expect(parseMemory("2Gi")).toBe(2 * 2 ** 30);
  expect(parseMemory("512Mi")).toBe(512 * 2 ** 20);
  expect(parseMemory("1.5Gi")).toBe(1.5 * 2 ** 30);
  expect(parseMemory("1G")).toBe(1e9);
  expect(parseMemory("100000")).toBe(100000);
  for (const bad of ["2GB", "-1Mi", "lots", "", "1 Gi"]) expect(() => parseMemory(bad)).toThrow(/invalid memory limit/);
  expect(() => parseMemory("1")).toThrow(/below one page/);
});

test("cpu counts to cfs quota over a 100000 µs period", () => {
  expect(parseCpuQuota("2")).toBe(200000);
  expect(parseCpuQuota("0.5")).toBe(50000);
  expect(parseCpuQuota("0.001")).toBe(1000); // kernel minimum
  expect(() => parseCpuQuota("0")).toThrow(/greater than 0/);
  for (const bad of ["two", "-1", "1e3"]) expect(() => parseCpuQuota(bad)).toThrow(/invalid cpu limit/);
});

test("everything the contract accepts parses", () => {
  const l = ResourceLimits.parse({ cpu: "1.5", memory: "768Mi", pids: 100 });
  expect(parseMemory(l.memory!)).toBe(768 * 2 ** 20);
  expect(parseCpuQuota(l.cpu!)).toBe(150000);
});
