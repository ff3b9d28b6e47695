/** The world control protocol's framing: any split of the byte stream decodes the same. */
import { expect, test } from "bun:test";
import { encodeFrame, Frame, FrameDecoder, MAX_FRAME } from "../../../agent/world/ctl.ts";

test("frames survive arbitrary chunking", () => {
  const frames: [number, Buffer][] = [
    [Frame.REQUEST, Buffer.from(JSON.stringify({ argv: ["a"], cwd: "/", env: {} }))],
    [Frame.STDIN, Buffer.alloc(0)],
    [Frame.STDOUT, Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 256))],
    [Frame.EXIT, Buffer.from('{"exit":0,"signal":null}')],
  ];
  const wire = Buffer.concat(frames.map(([t, p]) => encodeFrame(t, p)));
  for (let trial = 0; trial < 60; trial++) {
    const got: [number, Buffer][] = [];
    const dec = new FrameDecoder((t, p) => got.push([t, Buffer.from(p)]));
    let i = 0;
    while (i < wire.length) {
      const n = 1 + Math.floor(Math.random() * (trial % 2 ? 7 : 9000));
      dec.push(wire.subarray(i, i + n));
      i += n;
    }
    expect(got.length).toBe(frames.length);
    got.forEach(([t, p], k) => {
      expect(t).toBe(frames[k]![0]);
      expect(p.equals(frames[k]![1])).toBe(true);
    });
  }
});

test("an oversized frame header is refused, not allocated", () => {
  const dec = new FrameDecoder(() => {});
  const h = Buffer.alloc(5);
  h[0] = Frame.STDOUT;
  h.writeUInt32BE(MAX_FRAME + 1, 1);
  expect(() => dec.push(h)).toThrow(/too large/);
});
