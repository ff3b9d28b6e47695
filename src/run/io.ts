/**
 * The two ways a planned command's bytes travel, besides the NDJSON execute (execute.ts):
 *
 * `runStream`: the CLI side of `/v1/stream` (protocol: src/contract/stream.ts), for io
 * "pty", for "pipes" with redirected stdin, and for "buffered" with an abort signal.
 *
 * PTY mode: the user's terminal goes raw (every key, Ctrl-C and Ctrl-Z included, travels as
 * a byte to the world's PTY, whose line discipline turns them into signals for the
 * foreground job — exactly as in a local terminal), SIGWINCH becomes a `resize`, terminal
 * output is written back untouched. The terminal mode is restored on every exit path.
 *
 * Pipe mode: stdin is streamed as it arrives (never read to the end first — a harness that
 * leaves stdin open but silent must not hang `substrate -c true`): the session ends when the
 * command exits, whatever stdin is doing.
 *
 * `runOnHost`: the host fallback (world disabled or unavailable), the same io modes.
 */
import { blockedEgressLine } from "../contract/net.ts"; // issue 15 (EGRESS)
import { wsUrl } from "../api/address.ts";
import type { StreamStartInput } from "../contract/stream.ts";
import { CliError, ExitCode, signalExit } from "../errors.ts";
import { WriteHold } from "../api/flow.ts"; // issue 18.4: back-pressure

export interface StreamRunOptions {
  socketPath: string;
  start: StreamStartInput;
  stdin?: NodeJS.ReadStream;
  stdout?: NodeJS.WriteStream;
  stderr?: NodeJS.WriteStream;
  /** bytes for stdin instead of a stream (then `eof`) */
  input?: Uint8Array;
  /** output sinks instead of stdout/stderr streams (buffered io) */
  onStdout?: (b: Buffer) => void;
  onStderr?: (b: Buffer) => void;
  /** PTY output passes through this first (the shell strips its OSC markers here). */
  filter?: (chunk: Buffer) => Buffer;
  /** Forward stdin (default true). */
  forwardStdin?: boolean;
  /** closing the stream ends the command in the world */
  signal?: AbortSignal;
  /** (AGENTS, issue 16) pipe mode: these signals received here are sent to the command's process group */
  forwardSignals?: NodeJS.Signals[];
  /** (AGENTS, issue 16) the agent's `started` message: its span and world (for the host span / outcome) */
  onStarted?: (m: { span_id: string; world_id: string }) => void;
}

// The agent's error code → exit code: zod-free (exit-codes.ts), shared with the fast path.
export { exitForError } from "./exit-codes.ts";
import { exitForError } from "./exit-codes.ts";

/** Nothing ran: the stream could not be opened (the agent is not there). */
export class StreamConnectError extends Error {
  override name = "StreamConnectError";
}

/** Run one stream session to its end; resolves with the command's exit code. */
export async function runStream(o: StreamRunOptions): Promise<number> {
  const [{ WebSocket }, { StreamServerMessage }] = await Promise.all([import("ws"), import("../contract/stream.ts")]);
  const stdin = o.stdin ?? process.stdin;
  const stdout = o.stdout ?? process.stdout;
  const stderr = o.stderr ?? process.stderr;
  const pty = o.start.pty ?? true;
  const say = (l: string) => stderr.write(`substrate: ${l}\n`);

  return new Promise<number>((resolve, reject) => {
    // The Lima backend's last-resort transport (ssh-tcp) hands out "127.0.0.1:PORT", not a path.
    const ws = new WebSocket(wsUrl(o.socketPath, "/v1/stream"), { perMessageDeflate: false });
    // Issue 18.4 (BACKPRESSURE, src/api/flow.ts WriteHold): a slow reader of our stdout/stderr
    // holds the stream (and so the command in the world); the exit waits until what we wrote is
    // out (process.exit drops it); a reader that went away ends the session (141, as SIGPIPE).
    let brokenPipe = false;
    const hold = new WriteHold(ws, () => {
      brokenPipe = true;
      ws.close();
    });
    const writeOut = o.onStdout ?? ((b: Buffer) => hold.write(stdout, b));
    const writeErr = o.onStderr ?? ((b: Buffer) => hold.write(stderr, b));
    let opened = false;
    let settled = false;
    let exitCode: number | undefined;
    const useStdin = o.input === undefined && o.forwardStdin !== false;
    const raw = pty && useStdin && stdin.isTTY === true;
    const cleanup: (() => void)[] = [];
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      for (const c of cleanup.splice(0).reverse()) {
        try {
          c();
        } catch {}
      }
      fn();
    };
    if (o.signal) {
      const onAbort = () => ws.close();
      if (o.signal.aborted) onAbort();
      o.signal.addEventListener("abort", onAbort, { once: true });
      cleanup.push(() => o.signal!.removeEventListener("abort", onAbort));
    }

    ws.on("open", () => {
      opened = true;
      const size = stdout.isTTY ? { cols: stdout.columns || 80, rows: stdout.rows || 24 } : {};
      ws.send(JSON.stringify({ ...size, ...o.start, type: "start" }));
      if (raw) {
        stdin.setRawMode(true);
        cleanup.push(() => stdin.setRawMode(false));
        // Killed from outside: never leave the user's terminal raw.
        const onTerm = (sig: NodeJS.Signals) => {
          stdin.setRawMode(false);
          ws.terminate();
          process.exit(128 + (sig === "SIGHUP" ? 1 : 15));
        };
        process.once("SIGTERM", onTerm);
        process.once("SIGHUP", onTerm);
        cleanup.push(() => {
          process.off("SIGTERM", onTerm);
          process.off("SIGHUP", onTerm);
        });
      }
      if (!pty && o.forwardSignals?.length) {
        // AGENTS (issue 16): the bash entry passes TERM/INT/HUP on, as a shell's parent would see them handled
        for (const sig of o.forwardSignals) {
          const fwd = () => {
            if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: "signal", signal: sig }));
          };
          process.on(sig, fwd);
          cleanup.push(() => process.off(sig, fwd));
        }
      }
      if (o.input !== undefined) {
        if (o.input.length) ws.send(o.input, { binary: true });
        ws.send(JSON.stringify({ type: "eof" }));
      } else if (useStdin) {
        const onData = (b: Buffer) => {
          if (ws.readyState === ws.OPEN) ws.send(b, { binary: true });
        };
        const onEnd = () => {
          if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: "eof" }));
        };
        stdin.on("data", onData);
        stdin.once("end", onEnd);
        stdin.resume();
        cleanup.push(() => {
          stdin.off("data", onData);
          stdin.off("end", onEnd);
          stdin.pause();
          // A pipe left open by the caller must not keep us alive after the command is done.
          (stdin as unknown as { unref?: () => void }).unref?.();
        });
      }
      if (pty && stdout.isTTY) {
        const onWinch = () => {
          if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: "resize", cols: stdout.columns || 80, rows: stdout.rows || 24 }));
        };
        process.on("SIGWINCH", onWinch);
        cleanup.push(() => process.off("SIGWINCH", onWinch));
      }
    });

    ws.on("message", (d: unknown, binary: boolean) => {
      const buf = Array.isArray(d) ? Buffer.concat(d as Buffer[]) : Buffer.from(d as ArrayBuffer);
      if (binary) {
        writeOut(o.filter ? o.filter(buf) : buf);
        return;
      }
      let m: import("../contract/stream.ts").StreamServerMessage;
      try {
        m = StreamServerMessage.parse(JSON.parse(buf.toString("utf8")));
      } catch {
        return;
      }
      if (m.type === "started") o.onStarted?.(m);
      else if (m.type === "stderr") writeErr(Buffer.from(m.data_b64, "base64"));
      else if (m.type === "exit") {
        exitCode = m.code;
        // Issue 15 (EGRESS): one line at the end for what the world's gateway blocked.
        const blocked = m.egress ? blockedEgressLine(m.egress.blocked) : null;
        if (blocked) say(blocked);
      }
      else if (m.type === "error") {
        if (raw) stdin.setRawMode(false);
        say(m.message);
        if (m.hint) say(`hint: ${m.hint}`);
        exitCode ??= exitForError(m.code);
      }
    });

    ws.on("close", () => {
      void hold.flushed().then(() => finish(() => {
        if (exitCode !== undefined) resolve(exitCode);
        else if (brokenPipe) resolve(128 + 13);
        else if (o.signal?.aborted) resolve(128 + 9);
        else reject(new CliError(ExitCode.UNAVAILABLE, "the world agent closed the stream before the command finished", "run `substrate world doctor`"));
      }));
    });
    ws.on("error", (e: Error) => {
      if (opened) return; // `close` follows and decides
      finish(() => reject(new StreamConnectError(`cannot open a stream to the world agent at ${o.socketPath}: ${e.message}`)));
    });
  });
}

export interface HostRun {
  argv: string[];
  cwd: string;
  env: Record<string, string | undefined>;
  /** bytes for stdin (consumed already, or buffered io); otherwise stdin is inherited */
  stdin?: Uint8Array;
  /** buffered: capture output through these instead of inheriting stdout/stderr */
  onStdout?: (b: Uint8Array) => void;
  onStderr?: (b: Uint8Array) => void;
  signal?: AbortSignal;
}

/** The host fallback: the command on this machine (SUBSTRATE_WORLD=disabled for nested calls). */
export async function runOnHost(h: HostRun): Promise<number> {
  const buffered = h.onStdout !== undefined;
  const proc = Bun.spawn(h.argv, {
    cwd: h.cwd,
    env: { ...h.env, SUBSTRATE_WORLD: "disabled" },
    stdio: [h.stdin ? "pipe" : buffered ? "ignore" : "inherit", buffered ? "pipe" : "inherit", buffered ? "pipe" : "inherit"],
    ...(h.signal ? { signal: h.signal } : {}),
  });
  if (h.stdin) {
    const sink = proc.stdin as import("bun").FileSink;
    sink.write(h.stdin);
    void sink.end();
  }
  const pump = async (s: unknown, f: (b: Uint8Array) => void) => {
    for await (const c of s as ReadableStream<Uint8Array>) f(c);
  };
  const pumps = buffered ? [pump(proc.stdout, h.onStdout!), pump(proc.stderr, h.onStderr ?? (() => {}))] : [];
  const code = await proc.exited;
  await Promise.all(pumps);
  return signalExit((proc.signalCode as string | null) ?? null, code);
}
