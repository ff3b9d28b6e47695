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
  /**
   * Issue 6 (agent/scopes.ts): the scope token text. The spawner puts it in a sealed memfd
   * given to the command as fd 3 (`SUBSTRATE_SCOPE_FD=3`); it never enters an environment.
   */
  scope_token?: string;
  /**
   * Issue 14.2: leave what the command started in the background running after it ends (dev
   * servers). Default: everything it left in its cgroup is killed when it exits (cmdslots.ts).
   */
  keep_background?: boolean;
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

/**
 * Incremental frame decoder: feed chunks, get whole frames. Linear in the bytes fed: chunks
 * are kept in a list and joined only once a whole frame is there (a 64 KiB frame arriving
 * in 1-byte pieces must not cost 64K re-copies).
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private len = 0;
  constructor(private readonly onFrame: (type: number, payload: Buffer) => void) {}

  /** Remove and return the first n buffered bytes (n <= len). */
  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const parts: Buffer[] = [];
      let got = 0;
      while (got < n) {
        const c = this.chunks[0]!;
        const want = n - got;
        if (c.length <= want) {
          parts.push(c);
          got += c.length;
          this.chunks.shift();
        } else {
          parts.push(c.subarray(0, want));
          this.chunks[0] = c.subarray(want);
          got = n;
        }
      }
      out = Buffer.concat(parts, n);
    }
    this.len -= n;
    return out;
  }

  private peekHeader(): { type: number; len: number } | null {
    if (this.len < 5) return null;
    if (this.chunks[0]!.length < 5) this.chunks.unshift(this.take(5)), (this.len += 5);
    const h = this.chunks[0]!;
    return { type: h[0]!, len: h.readUInt32BE(1) };
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.len += chunk.length;
    for (;;) {
      const h = this.peekHeader();
      if (!h) return;
      if (h.len > MAX_FRAME) throw new Error(`ctl frame too large (${h.len} bytes)`);
      if (this.len < 5 + h.len) return;
      this.take(5);
      this.onFrame(h.type, h.len === 0 ? Buffer.alloc(0) : this.take(h.len));
    }
  }
}

export function sendJson(sock: Socket, type: number, value: unknown): void {
  sock.write(encodeFrame(type, JSON.stringify(value)));
}
