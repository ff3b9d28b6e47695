/**
 * The test upstream for the egress tests, run inside a test-created network namespace:
 * `bun _egress-upstream.ts <cert.pem> <key.pem> <static-dir>`. Prints "ready" once every port
 * listens.
 *   :80, :8080   HTTP: "/" → "ok <port>\n"; "/bytes/N" → N bytes; "/static/…" → files under
 *                <static-dir> (a dumb-HTTP git repository lives there); POST → "got N\n"
 *   :443         HTTPS (a certificate of the test CA): "/" → "ok 443 tls\n"
 *   :22          an SSH-like banner ("SSH-2.0-OpenSSH_9.9 substrate-test"), then echo
 *   :7000        raw TCP echo
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, normalize } from "node:path";

const [cert, key, staticDir] = process.argv.slice(2);
if (!cert || !key || !staticDir) {
  console.error("usage: _egress-upstream.ts <cert.pem> <key.pem> <static-dir>");
  process.exit(2);
}

function bytes(n: number): Response {
  const chunk = new Uint8Array(64 * 1024).fill(120);
  let left = n;
  return new Response(
    new ReadableStream({
      pull(c) {
        if (left <= 0) return c.close();
        const k = Math.min(left, chunk.length);
        left -= k;
        c.enqueue(k === chunk.length ? chunk : chunk.subarray(0, k));
      },
    }),
    { headers: { "content-length": String(n) } },
  );
}

const handler = (port: number) => async (req: Request): Promise<Response> => {
  const u = new URL(req.url);
  if (req.method === "POST") return new Response(`got ${(await req.arrayBuffer()).byteLength}\n`);
  const m = /^\/bytes\/(\d+)$/.exec(u.pathname);
  if (m) return bytes(Number(m[1]));
  if (u.pathname.startsWith("/static/")) {
    const p = normalize(join(staticDir, u.pathname.slice("/static/".length)));
    if (!p.startsWith(staticDir) || !existsSync(p) || !statSync(p).isFile()) return new Response("not found\n", { status: 404 });
    return new Response(readFileSync(p));
  }
  return new Response(port === 443 ? "ok 443 tls\n" : `ok ${port}\n`);
};

const servers = [80, 8080].map((port) => Bun.serve({ hostname: "0.0.0.0", port, fetch: handler(port) }));
servers.push(Bun.serve({ hostname: "0.0.0.0", port: 443, tls: { cert: readFileSync(cert, "utf8"), key: readFileSync(key, "utf8") }, fetch: handler(443) }));

const echo = (banner?: string) =>
  Bun.listen({
    allowHalfOpen: true,
    hostname: "0.0.0.0",
    port: banner ? 22 : 7000,
    socket: {
      open(s) {
        if (banner) s.write(banner);
      },
      data(s, b) {
        s.write(b);
      },
      end(s) {
        s.end();
      },
    },
  });
const tcp = [echo("SSH-2.0-OpenSSH_9.9 substrate-test\r\n"), echo()];
console.log("ready");
process.on("SIGTERM", () => {
  for (const s of servers) s.stop(true);
  for (const t of tcp) t.stop(true);
  process.exit(0);
});
