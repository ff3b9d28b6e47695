/**
 * A tiny authoritative-for-everything DNS server for the network tests, run inside a
 * test-created network namespace: `bun _dns-server.ts <bind-ip> <zone.json>`.
 * Zone file: { "name": { "A": ["10.0.0.1"], "AAAA": ["fd00::1"], "ttl": 30 } }, re-read on
 * SIGHUP (prints "reloaded"). Unknown names get NXDOMAIN. Prints "ready" once bound, and one
 * line per query ("q <name> <type> from <ip>") so a test can see who asked what.
 */
import dgram from "node:dgram";
import { readFileSync } from "node:fs";
import { decodeMessage, encodeMessage, QTYPE, RCODE, type DnsRecord } from "../../agent/world/net/dnswire.ts";

type Zone = Record<string, { A?: string[]; AAAA?: string[]; ttl?: number }>;

const [bind, zoneFile] = process.argv.slice(2);
if (!bind || !zoneFile) {
  console.error("usage: _dns-server.ts <bind-ip> <zone.json>");
  process.exit(2);
}
let zone = JSON.parse(readFileSync(zoneFile, "utf8")) as Zone;
process.on("SIGHUP", () => {
  zone = JSON.parse(readFileSync(zoneFile, "utf8")) as Zone;
  console.log("reloaded");
});

const sock = dgram.createSocket("udp4");
sock.on("message", (buf, rinfo) => {
  let q;
  try {
    q = decodeMessage(buf);
  } catch {
    return;
  }
  const question = q.questions[0];
  if (!question) return;
  console.log(`q ${question.name} ${question.type} from ${rinfo.address}`);
  const entry = zone[question.name];
  const answers: DnsRecord[] = [];
  if (entry) {
    const ttl = entry.ttl ?? 30;
    if (question.type === QTYPE.A) for (const a of entry.A ?? []) answers.push({ name: question.name, type: QTYPE.A, ttl, data: a });
    if (question.type === QTYPE.AAAA) for (const a of entry.AAAA ?? []) answers.push({ name: question.name, type: QTYPE.AAAA, ttl, data: a });
  }
  const reply = encodeMessage({
    id: q.id,
    response: true,
    rcode: entry ? RCODE.NOERROR : RCODE.NXDOMAIN,
    questions: [question],
    answers,
  });
  sock.send(reply, rinfo.port, rinfo.address);
});
sock.bind(53, bind, () => console.log("ready"));
process.on("SIGTERM", () => {
  sock.close();
  process.exit(0);
});
