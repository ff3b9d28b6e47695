/** Schema round trip: parse(JSON(parse(x))) equals parse(x), and the JSON text is stable. */
import { expect } from "bun:test";
import type { z } from "zod";

export function roundTrip<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  const a = schema.parse(value);
  const json = JSON.stringify(a);
  const b = schema.parse(JSON.parse(json));
  expect(b).toEqual(a);
  expect(JSON.stringify(b)).toBe(json);
  return a;
}
