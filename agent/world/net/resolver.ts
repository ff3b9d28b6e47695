/**
 * A-record queries straight to a configured upstream resolver (the gateway's resolver when
 * SUBSTRATE_WORLD_DNS_UPSTREAM is set, see agent/egress/gateway.ts): a few lines of DNS over
 * `node:dgram`, run in the agent's network namespace, so nothing inside a world influences
 * the answer.
 */
import dgram from "node:dgram";
import { addressesFor, decodeMessage, encodeMessage, QTYPE } from "./dnswire.ts";

export interface Upstream {
  host: string;
  port: number;
}

/** One A query over UDP; retries once; rejects on timeout or a malformed answer. */
export async function queryA(
  name: string,
  upstream: Upstream,
  timeoutMs = 1500,
): Promise<{ rcode: number; ips: string[]; ttl: number }> {
  let lastErr: unknown;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      return await queryOnce(name, upstream, timeoutMs);
    } catch (e) {
      lastErr = e;
    }
  }
  throw lastErr;
}

function queryOnce(name: string, upstream: Upstream, timeoutMs: number): Promise<{ rcode: number; ips: string[]; ttl: number }> {
  return new Promise((resolve, reject) => {
    const id = Math.floor(Math.random() * 0xffff);
    const sock = dgram.createSocket("udp4");
    const timer = setTimeout(() => {
      sock.close();
      reject(new Error(`no answer from ${upstream.host}:${upstream.port} for ${name} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on("error", (e) => {
      clearTimeout(timer);
      sock.close();
      reject(e);
    });
    sock.on("message", (buf, rinfo) => {
      if (rinfo.address !== upstream.host) return;
      let m;
      try {
        m = decodeMessage(buf);
      } catch {
        return;
      }
      if (m.id !== id || !m.response) return;
      clearTimeout(timer);
      sock.close();
      const recs = addressesFor(name, m, QTYPE.A);
      const ttl = recs.length === 0 ? 0 : Math.min(...recs.map((r) => r.ttl));
      resolve({ rcode: m.rcode, ips: [...new Set(recs.map((r) => r.data))], ttl });
    });
    sock.send(encodeMessage({ id, response: false, rcode: 0, questions: [{ name, type: QTYPE.A }], answers: [] }), upstream.port, upstream.host);
  });
}
