/**
 * The gateway's kernel relay (agent/egress/kernel-relay.ts: splice(2) through pipes, one epoll
 * worker thread), over loopback sockets: every byte both ways and counted exactly, a slow
 * reader held back by the pipes (bounded, nothing lost), half-close forwarded both ways, a
 * reset on one side closes the other, kill() cuts a live connection.
 */
import { afterAll, expect, test } from "bun:test";
import { dupFd, kernelRelay } from "../../../agent/egress/kernel-relay.ts";

type Sock = Awaited<ReturnType<typeof Bun.connect>>;
const listeners: Array<{ stop(f?: boolean): void }> = [];
afterAll(() => {
  for (const l of listeners) l.stop(true);
});

/** An accepted socket's descriptor, taken out of Bun (dup + plain close), and the client socket. */
async function rawPair(onClient: Parameters<typeof Bun.connect>[0]["socket"]): Promise<{ fd: number; client: Sock }> {
  let fd = -1;
  const l = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        s.pause();
        fd = dupFd((s as unknown as { fd: number }).fd);
        (s as unknown as { close(): void }).close();
      },
      data() {},
    },
  });
  listeners.push(l);
  const client = await Bun.connect({ hostname: "127.0.0.1", port: l.port, allowHalfOpen: true, socket: onClient });
  for (let i = 0; i < 400 && fd < 0; i++) await Bun.sleep(5);
  expect(fd).toBeGreaterThan(2);
  return { fd, client };
}

type Done = { up: number; down: number; err: number };
const relay = (a: number, b: number) => {
  let resolve!: (d: Done) => void;
  const done = new Promise<Done>((r) => (resolve = r));
  const k = kernelRelay()!.relay(a, b, resolve);
  expect(k).not.toBeNull();
  return { k: k!, done };
};

test("a request, a 24 MiB answer to a slow reader, half-close both ways: every byte, counted exactly", async () => {
  const size = 24 * 1024 * 1024;
  const chunk = new Uint8Array(1 << 20).fill(7);
  // "Upstream": reads the request until FIN, then sends `size` bytes and closes.
  let req = "";
  const up = await rawPair({
    data(_s, b) {
      req += Buffer.from(b).toString();
    },
    end(s) {
      let left = size;
      const pump = () => {
        while (left > 0) {
          const n = s.write(chunk, 0, Math.min(chunk.length, left));
          if (n <= 0) return;
          left -= n;
          if (n < Math.min(chunk.length, left + n)) return;
        }
        s.end();
      };
      (s as unknown as { data: unknown }).data = pump;
      pump();
    },
    drain(s) {
      ((s as unknown as { data: () => void }).data)?.();
    },
  });
  // "Client": sends a request, half-closes, reads slowly (paused for a while).
  let got = 0;
  let sawEnd = false;
  const cl = await rawPair({
    data(_s, b) {
      got += b.length;
    },
    end() {
      sawEnd = true;
    },
    close(_s, e) {
      closedWith = e ? String(e) : "clean";
    },
  });
  let closedWith = "";
  const { k, done } = relay(cl.fd, up.fd);
  cl.client.pause();
  cl.client.write("GET /big\n");
  cl.client.shutdown();
  await Bun.sleep(300);
  // Held back: the pipes and socket buffers bound what is in flight.
  expect(k.live().down).toBeLessThan(size);
  cl.client.resume();
  const d = await done;
  for (let i = 0; i < 200 && !sawEnd && !closedWith; i++) await Bun.sleep(10);
  expect(req).toBe("GET /big\n");
  expect(got).toBe(size);
  // The upstream's FIN reached the client (Bun reports a FIN after its own shutdown as a clean close).
  expect(sawEnd || closedWith === "clean").toBe(true);
  expect(d).toEqual({ up: 9, down: size, err: 0 });
}, 60_000);

test("a reset on one side closes the other; kill() cuts a live connection", async () => {
  let upClosed = false;
  const up = await rawPair({ data() {}, close() { upClosed = true; } });
  const cl = await rawPair({ data() {} });
  const r1 = relay(cl.fd, up.fd);
  cl.client.write("x");
  await Bun.sleep(100);
  cl.client.terminate(); // RST
  const d1 = await r1.done;
  expect(d1.up).toBe(1);
  for (let i = 0; i < 200 && !upClosed; i++) await Bun.sleep(10);
  expect(upClosed).toBe(true);

  let aClosed = false;
  let bClosed = false;
  const up2 = await rawPair({ data() {}, close() { bClosed = true; } });
  const cl2 = await rawPair({ data() {}, close() { aClosed = true; } });
  const r2 = relay(cl2.fd, up2.fd);
  await Bun.sleep(50);
  r2.k.kill();
  const d2 = await r2.done;
  expect(d2.err).not.toBe(0);
  for (let i = 0; i < 200 && !(aClosed && bClosed); i++) await Bun.sleep(10);
  expect(aClosed && bClosed).toBe(true);
}, 60_000);
