/**
 * The world control protocol: how the agent asks the in-world spawner to run a command.
 *
 * One Unix-socket connection per command. Frames are `[u8 type][u32be length][payload]`.
 * The client opens with a REQUEST frame (JSON), may send STDIN/STDIN_EOF/RESIZE/SIGNAL
 * frames, and receives STARTED, STDOUT/STDERR and finally EXIT or ERROR. A connection
 * that closes early kills its command (the spawner treats close as SIGKILL).
 *
 * The first connection the agent opens after `ready` is the LIFELINE: when it closes
 * (agent exited or crashed), the spawner exits and the world's PID namespace dies with it,
 * so a killed agent never leaves a world running.
 */
import type { Socket } from "node:net";

export const Frame = {
  // client -> spawner
  REQUEST: 0x10,
  STDIN: 0x11,
  STDIN_EOF: 0x12,
  RESIZE: 0x13,
  SIGNAL: 0x14,
  LIFELINE: 0x15,
  // spawner -> client
  STARTED: 0x01,
  STDOUT: 0x02,
  STDERR: 0x03,
  EXIT: 0x04,
  ERROR: 0x05,
} as const;

export interface CtlExecRequest {
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  /** Allocate a PTY (stdout carries the terminal's bytes; stderr is unused). */
  pty?: { cols: number; rows: number };
  /** Kill the command after this many ms (runtime budget). */
  timeout_ms?: number;
}

export interface CtlExit {
  exit: number;
  signal: string | null;
  timed_out?: boolean;
}

export function encodeFrame(type: number, payload: Uint8Array | string = new Uint8Array(0)): Buffer {
  const body = typeof payload === "string" ? Buffer.from(payload, "utf8") : payload;
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type;
  out.writeUInt32BE(body.length, 1);
  out.set(body, 5);
  return out;
}

export const MAX_FRAME = 64 * 1024 * 1024;

/** Incremental frame decoder: feed chunks, get whole frames. */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private readonly onFrame: (type: number, payload: Buffer) => void) {}

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    while (this.buf.length >= 5) {
      const len = this.buf.readUInt32BE(1);
      if (len > MAX_FRAME) throw new Error(`ctl frame too large (${len} bytes)`);
      if (this.buf.length < 5 + len) return;
      const type = this.buf[0]!;
      const payload = this.buf.subarray(5, 5 + len);
      this.buf = this.buf.subarray(5 + len);
      this.onFrame(type, payload);
    }
  }
}

export function sendJson(sock: Socket, type: number, value: unknown): void {
  sock.write(encodeFrame(type, JSON.stringify(value)));
}
