/**
 * Test HTTP host for the network tests, run inside a test-created network namespace:
 * `bun _http-server.ts <port>...` listens on [::] (dual stack) on each port and answers
 * "ok <port>". Prints "ready" once all ports listen.
 */
const ports = process.argv.slice(2).map(Number);
const servers = ports.map((port) =>
  Bun.serve({ hostname: "::", port, fetch: () => new Response(`ok ${port}\n`) }),
);
console.log("ready");
process.on("SIGTERM", () => {
  for (const s of servers) s.stop(true);
  process.exit(0);
});
