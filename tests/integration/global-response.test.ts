import { test, expect } from "bun:test";
test("loading the agent server leaves the global Response alone", async () => {
  const before = globalThis.Response;
  const { listen } = await import("../../agent/server.ts");
  const { Hono } = await import("hono");
  const { mkdtempSync } = await import("node:fs");
  const l = await listen(new Hono(), { path: `${mkdtempSync("/tmp/resp-")}/s.sock` });
  await l.close();
  expect(globalThis.Response).toBe(before);
  const srv = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("ok") });
  expect(await (await fetch(`http://127.0.0.1:${srv.port}/`)).text()).toBe("ok");
  srv.stop(true);
});
