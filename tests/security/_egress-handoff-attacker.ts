/**
 * A hijacked egress helper (it has the world's token and both gateway sockets) trying to
 * misuse the socket handoff: run in a network namespace by tests/security/egress-handoff.test.ts.
 * argv: <gw.sock> <fd.sock> <token> <scenario> <name> <port>
 * Prints one JSON line: the gateway's answer (and, for an accepted connection, what came back).
 */
import { connectSeqpacket, sendWithFd } from "../../agent/egress/fdpass.ts";

const [gw, fdSock, token, scenario, name, portS] = process.argv.slice(2) as [string, string, string, string, string, string];
const port = Number(portS);
Bun.spawnSync(["ip", "link", "set", "lo", "up"]);

const answers = new Map<number, (a: Record<string, unknown>) => void>();
let buf = "";
const ctl = await Bun.connect({
  unix: gw,
  socket: {
    data(_s, b) {
      buf += Buffer.from(b).toString();
      let nl: number;
      while ((nl = buf.indexOf("\n")) !== -1) {
        const a = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        buf = buf.slice(nl + 1);
        answers.get(a.id as number)?.(a);
      }
    },
  },
});
ctl.write(`${JSON.stringify({ v: 1, token, kind: "control" })}\n`);
const ask = (id: number, req: Record<string, unknown>) =>
  new Promise<Record<string, unknown>>((resolve) => {
    answers.set(id, resolve);
    ctl.write(`${JSON.stringify({ id, ...req })}\n`);
    setTimeout(() => resolve({ timeout: true }), 15_000);
  });
const chan = connectSeqpacket(fdSock);
sendWithFd(chan, Buffer.from(token));
const ch = await ask(1, { op: "fdchan" });
if (ch.ok !== true) {
  console.log(JSON.stringify({ channel: ch }));
  process.exit(0);
}

/** A connected pair on 127.0.0.1:<listenPort>: the accepted end's fd, the client socket and the listener. */
async function pair(listenPort: number): Promise<{ accepted: number; listener: unknown; client: unknown; got: () => string }> {
  let acceptedFd = -1;
  let got = "";
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: listenPort,
    socket: {
      open(s) {
        s.pause();
        acceptedFd = (s as unknown as { fd: number }).fd;
      },
      data() {},
    },
  });
  const client = await Bun.connect({ hostname: "127.0.0.1", port: listenPort, socket: { data: (_s, b) => void (got += Buffer.from(b).toString()) } });
  for (let i = 0; i < 200 && acceptedFd < 0; i++) await Bun.sleep(5);
  return { accepted: acceptedFd, listener, client, got: () => got };
}

const send = (id: number, payload: string, fd?: number) => sendWithFd(chan, Buffer.from(`${JSON.stringify({ id })}\n${payload}`), fd);
let out: Record<string, unknown> = {};
switch (scenario) {
  case "control":
  case "name-recheck": {
    const p = await pair(3128);
    send(10, "ping\n", p.accepted);
    const a = await ask(10, { op: "connect", via: "proxy", name, port });
    for (let i = 0; i < 200 && a.ok && !p.got().includes("ping"); i++) await Bun.sleep(10);
    out = { answer: a, echoed: p.got() };
    break;
  }
  case "listening": {
    const p = await pair(3128);
    const lfd = (p.listener as unknown as { fd?: number }).fd;
    send(10, "", lfd);
    out = { answer: await ask(10, { op: "connect", via: "proxy", name, port }), lfd };
    break;
  }
  case "wrong-port": {
    const p = await pair(4444);
    send(10, "", p.accepted);
    out = { answer: await ask(10, { op: "connect", via: "proxy", name, port }) };
    break;
  }
  case "unix": {
    send(10, "", (ctl as unknown as { fd: number }).fd);
    out = { answer: await ask(10, { op: "connect", via: "proxy", name, port }) };
    break;
  }
  case "two-fds": {
    // Two descriptors in one message: sendmsg with SCM_RIGHTS of two fds, built by hand.
    const p = await pair(3128);
    const { dlopen, FFIType, ptr } = await import("bun:ffi");
    const L = dlopen("libc.so.6", { sendmsg: { args: [FFIType.i32, FFIType.pointer, FFIType.i32], returns: FFIType.i64 } }).symbols;
    const payload = Buffer.from(`${JSON.stringify({ id: 10 })}\n`);
    const iov = new BigUint64Array([BigInt(ptr(payload)), BigInt(payload.length)]);
    const ctlb = new DataView(new ArrayBuffer(24));
    ctlb.setBigUint64(0, 24n, true);
    ctlb.setInt32(8, 1, true);
    ctlb.setInt32(12, 1, true);
    ctlb.setInt32(16, p.accepted, true);
    ctlb.setInt32(20, p.accepted, true);
    const msg = new DataView(new ArrayBuffer(56));
    msg.setBigUint64(16, BigInt(ptr(iov)), true);
    msg.setBigUint64(24, 1n, true);
    msg.setBigUint64(32, BigInt(ptr(new Uint8Array(ctlb.buffer))), true);
    msg.setBigUint64(40, 24n, true);
    const rc = Number(L.sendmsg(chan, ptr(new Uint8Array(msg.buffer)), 0x40));
    out = { sent: rc, answer: await ask(10, { op: "connect", via: "proxy", name, port }) };
    break;
  }
  case "no-message": {
    out = { answer: await ask(10, { op: "connect", via: "proxy", name, port }) };
    break;
  }
  case "transparent-claim": {
    // Not a redirected connection: the claimed destination must not be believed.
    const p = await pair(15001);
    send(10, "ping\n", p.accepted);
    out = { answer: await ask(10, { op: "connect", via: "transparent", ip: name, port }), echoed: p.got() };
    break;
  }
}
console.log(JSON.stringify(out));
process.exit(0);
