/**
 * A minimal DNS wire-format codec (RFC 1035): enough to ask an upstream resolver for A
 * records with their TTLs (the allowlist resolver task) and to answer A/AAAA queries
 * (the integration tests' DNS server). No EDNS, no DNSSEC; names are compared
 * case-insensitively and without the trailing dot.
 */

export const QTYPE = { A: 1, CNAME: 5, PTR: 12, AAAA: 28, SVCB: 64, HTTPS: 65 } as const;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;

export interface DnsQuestion {
  name: string;
  type: number;
}

export interface DnsRecord {
  name: string;
  type: number;
  ttl: number;
  /** A: dotted quad; AAAA: RFC 5952-ish lowercase hex groups; CNAME: the target name. */
  data: string;
}

export interface DnsMessage {
  id: number;
  /** QR bit: true for a response. */
  response: boolean;
  rcode: number;
  questions: DnsQuestion[];
  answers: DnsRecord[];
}

export class DnsWireError extends Error {
  override name = "DnsWireError";
}

const norm = (n: string): string => n.replace(/\.$/, "").toLowerCase();

function encodeName(name: string): Buffer {
  const parts = norm(name).split(".").filter((p) => p.length > 0);
  const bufs: Buffer[] = [];
  for (const p of parts) {
    const b = Buffer.from(p, "ascii");
    if (b.length > 63) throw new DnsWireError(`label too long in ${name}`);
    bufs.push(Buffer.from([b.length]), b);
  }
  bufs.push(Buffer.from([0]));
  return Buffer.concat(bufs);
}

/** Reads a (possibly compressed) name at `off`; returns the name and the offset after it. */
function decodeName(msg: Buffer, off: number): [string, number] {
  const labels: string[] = [];
  let end = -1;
  for (let hops = 0; hops < 64; hops++) {
    if (off >= msg.length) throw new DnsWireError("name runs past the message");
    const len = msg[off]!;
    if (len === 0) {
      return [labels.join("."), end === -1 ? off + 1 : end];
    }
    if ((len & 0xc0) === 0xc0) {
      // Compression pointer: the rest of the name lives elsewhere in the message.
      if (end === -1) end = off + 2;
      off = ((len & 0x3f) << 8) | msg[off + 1]!;
      continue;
    }
    labels.push(msg.subarray(off + 1, off + 1 + len).toString("ascii").toLowerCase());
    off += 1 + len;
  }
  throw new DnsWireError("name compression loop");
}

function ipv6ToString(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(":");
}

function ipv6ToBytes(s: string): Buffer {
  const [head, tail] = s.includes("::") ? s.split("::") : [s, undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  if (groups.length !== 8) throw new DnsWireError(`bad IPv6 address ${s}`);
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(Number.parseInt(g, 16), i * 2));
  return b;
}

export function encodeMessage(m: DnsMessage): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(m.id, 0);
  // Queries ask for recursion (RD); responses claim it is available (RA) and echo RD.
  const flags = m.response ? 0x8000 | 0x0100 | 0x0080 | (m.rcode & 0xf) : 0x0100;
  header.writeUInt16BE(flags, 2);
  header.writeUInt16BE(m.questions.length, 4);
  header.writeUInt16BE(m.answers.length, 6);
  const parts: Buffer[] = [header];
  for (const q of m.questions) {
    const t = Buffer.alloc(4);
    t.writeUInt16BE(q.type, 0);
    t.writeUInt16BE(1, 2); // class IN
    parts.push(encodeName(q.name), t);
  }
  for (const a of m.answers) {
    let rdata: Buffer;
    if (a.type === QTYPE.A) rdata = Buffer.from(a.data.split(".").map((x) => Number(x)));
    else if (a.type === QTYPE.AAAA) rdata = ipv6ToBytes(a.data);
    else if (a.type === QTYPE.CNAME || a.type === QTYPE.PTR) rdata = encodeName(a.data);
    else throw new DnsWireError(`cannot encode record type ${a.type}`);
    const fixed = Buffer.alloc(10);
    fixed.writeUInt16BE(a.type, 0);
    fixed.writeUInt16BE(1, 2);
    fixed.writeUInt32BE(a.ttl >>> 0, 4);
    fixed.writeUInt16BE(rdata.length, 8);
    parts.push(encodeName(a.name), fixed, rdata);
  }
  return Buffer.concat(parts);
}

export function decodeMessage(msg: Buffer): DnsMessage {
  if (msg.length < 12) throw new DnsWireError("message shorter than a DNS header");
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  const qd = msg.readUInt16BE(4);
  const an = msg.readUInt16BE(6);
  let off = 12;
  const questions: DnsQuestion[] = [];
  for (let i = 0; i < qd; i++) {
    const [name, next] = decodeName(msg, off);
    if (next + 4 > msg.length) throw new DnsWireError("truncated question");
    questions.push({ name, type: msg.readUInt16BE(next) });
    off = next + 4;
  }
  const answers: DnsRecord[] = [];
  for (let i = 0; i < an; i++) {
    const [name, next] = decodeName(msg, off);
    if (next + 10 > msg.length) throw new DnsWireError("truncated answer");
    const type = msg.readUInt16BE(next);
    const ttl = msg.readUInt32BE(next + 4);
    const len = msg.readUInt16BE(next + 8);
    const start = next + 10;
    if (start + len > msg.length) throw new DnsWireError("truncated rdata");
    const rdata = msg.subarray(start, start + len);
    let data: string | undefined;
    if (type === QTYPE.A && len === 4) data = [...rdata].join(".");
    else if (type === QTYPE.AAAA && len === 16) data = ipv6ToString(rdata);
    else if (type === QTYPE.CNAME || type === QTYPE.PTR) data = decodeName(msg, start)[0];
    if (data !== undefined) answers.push({ name, type, ttl, data });
    off = start + len;
  }
  return { id, response: (flags & 0x8000) !== 0, rcode: flags & 0xf, questions, answers };
}

/**
 * The A records that answer `qname`, following the CNAME chain inside the answer
 * section (a recursive resolver returns the whole chain in one reply).
 */
export function addressesFor(qname: string, m: DnsMessage, type: number = QTYPE.A): DnsRecord[] {
  let names = new Set([norm(qname)]);
  for (let i = 0; i < 16; i++) {
    const more = m.answers.filter((r) => r.type === QTYPE.CNAME && names.has(r.name) && !names.has(norm(r.data)));
    if (more.length === 0) break;
    names = new Set([...names, ...more.map((r) => norm(r.data))]);
  }
  return m.answers.filter((r) => r.type === type && names.has(r.name));
}
