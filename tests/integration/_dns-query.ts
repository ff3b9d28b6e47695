/**
 * One DNS query from inside a world: `bun _dns-query.ts <server> <name> <A|AAAA>`.
 * Prints {"rcode":N,"answers":[...]} or {"error":"..."}; exit 0 either way.
 */
import { decodeMessage, encodeMessage, QTYPE } from "../../agent/world/net/dnswire.ts";
import dgram from "node:dgram";

const [server, name, type] = process.argv.slice(2);
const s = dgram.createSocket("udp4");
const t = setTimeout(() => {
  console.log(JSON.stringify({ error: "timeout" }));
  process.exit(0);
}, 2000);
s.on("error", (e) => {
  console.log(JSON.stringify({ error: e.message }));
  process.exit(0);
});
s.on("message", (b) => {
  const m = decodeMessage(b);
  console.log(JSON.stringify({ rcode: m.rcode, answers: m.answers }));
  clearTimeout(t);
  s.close();
});
const qtype = type === "AAAA" ? QTYPE.AAAA : QTYPE.A;
s.send(encodeMessage({ id: 4242, response: false, rcode: 0, questions: [{ name: name!, type: qtype }], answers: [] }), 53, server!);
