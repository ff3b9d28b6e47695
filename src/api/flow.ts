/**
 * Back-pressure for command output (issue 18.4): a client that stops reading must not make
 * anything between it and the command buffer the command's output without bound. Every hop
 * stops reading the one before it while the one after it is full, as a terminal would:
 *
 *   command ─pipe/PTY─▶ spawner ─ctl socket─▶ agent ─WebSocket / NDJSON─▶ (proxy ─▶) client
 *
 * - agent, `/v1/stream` (`SendWindow`, agent/stream.ts): bytes handed to the client's
 *   WebSocket but not yet written to its socket are counted (ws send callbacks); above
 *   HIGH_WATER the command's ctl connection is paused (the agent stops reading it), below
 *   LOW_WATER it is resumed;
 * - agent, NDJSON execute (src/api/router.ts): the response body is a pull-based stream; the
 *   HTTP response stops pulling while the client's socket is full, and once NDJSON_HIGH_WATER
 *   waits the command is paused (`OutputSink.flow`), resumed in pull();
 * - spawner (`drainBelow`, agent/world/spawner.ts): while its ctl socket holds more than
 *   HIGH_WATER unsent bytes it stops reading the command's pipe (the pipe fills and the command
 *   blocks in write(2)), or stops the command's terminal (agent/world/ptyflow.ts: tcflow
 *   TCOOFF, a terminal's XOFF; Bun's terminal itself cannot stop reading its master);
 * - host proxy (src/proxy/forward.ts, src/proxy/stream.ts): the same two, between its client
 *   and the agent.
 *
 * Nothing is dropped: every byte reaches the client once it reads again (the command's EXIT
 * frame waits behind its output). Memory is bounded by the windows plus the kernel's socket,
 * pipe and pty buffers.
 */

/** Bytes in flight before the producer is paused, and the level at which it resumes. */
export const HIGH_WATER = 4 * 1024 * 1024;
export const LOW_WATER = 1024 * 1024;
/** NDJSON bytes queued for a lagging client before the command's output is paused (src/api/router.ts). */
export const NDJSON_HIGH_WATER = 1024 * 1024;

export interface Pausable {
  pause(): void;
  resume(): void;
}

export class SendWindow {
  private pending = 0;
  private paused = false;
  private generation = 0;
  private target?: Pausable;

  constructor(
    private readonly high = HIGH_WATER,
    private readonly low = LOW_WATER,
  ) {}

  /** The producer to pause (known only once the command started; a pause asked for before applies now). */
  bind(target: Pausable): void {
    this.target = target;
    if (this.paused) target.pause();
  }
  private pause(): void {
    this.target?.pause();
  }
  private resume(): void {
    this.target?.resume();
  }

  /**
   * `n` bytes go to the client now; returns the send callback to pass to `ws.send`. Callbacks
   * of a client that is gone (reset) no longer count.
   */
  track(n: number): (err?: Error) => void {
    const gen = this.generation;
    this.pending += n;
    if (!this.paused && this.pending > this.high) {
      this.paused = true;
      this.pause();
    }
    return () => {
      if (gen !== this.generation) return;
      this.pending -= n;
      if (this.paused && this.pending <= this.low) {
        this.paused = false;
        this.resume();
      }
    };
  }

  /** The client changed or went away (detach, close, attach): nothing is in flight to it; the producer runs. */
  reset(): void {
    this.generation++;
    this.pending = 0;
    if (this.paused) {
      this.paused = false;
      this.resume();
    }
  }

  get inFlight(): number {
    return this.pending;
  }
}

/** Resolves once `sock` has at most `high` bytes queued (or is gone): the spawner's half. */
export function drainBelow(sock: { writableLength: number; destroyed: boolean; once(ev: string, f: () => void): unknown }, high = HIGH_WATER): Promise<void> | undefined {
  if (sock.destroyed || sock.writableLength <= high) return undefined;
  const s = sock as unknown as { once(ev: string, f: () => void): unknown; off(ev: string, f: () => void): unknown };
  return new Promise((resolve) => {
    const done = () => {
      s.off("drain", done);
      s.off("close", done);
      resolve();
    };
    s.once("drain", done);
    s.once("close", done);
  });
}

interface Sink {
  write(b: Uint8Array, cb: (err?: Error | null) => void): boolean;
  once(ev: "drain" | "error", f: (e?: unknown) => void): unknown;
}

/**
 * The client's half (the CLI, src/run/io.ts): writes to its stdout/stderr that hold the stream
 * while a slow reader lags — `source` (the WebSocket) is paused while a write waits for
 * `drain`, so the agent then holds the command — and `flushed()` before exiting, since
 * process.exit drops what a pipe has not taken yet (Bun buffers it and reports writableLength
 * 0). A reader that went away (EPIPE) calls `onBroken` once; later writes to it are dropped.
 */
export class WriteHold {
  /** writes not yet taken, per sink */
  private readonly pending = new Map<Sink, number>();
  private readonly held = new Set<Sink>();
  private readonly broken = new Set<Sink>();
  private waiters: (() => void)[] = [];

  constructor(
    private readonly source: Pausable,
    private readonly onBroken: () => void = () => {},
  ) {}

  write(s: Sink, b: Uint8Array): void {
    if (this.broken.has(s)) return;
    if (!this.pending.has(s)) s.once("error", () => this.gone(s));
    this.pending.set(s, (this.pending.get(s) ?? 0) + 1);
    const ok = s.write(b, () => this.settle(s));
    if (!ok && !this.held.has(s) && !this.broken.has(s)) {
      this.held.add(s);
      if (this.held.size === 1) this.source.pause();
      s.once("drain", () => this.release(s));
    }
  }

  /** Resolves once every write was taken by its reader (or the reader is gone). */
  flushed(): Promise<void> {
    return this.idle() ? Promise.resolve() : new Promise((r) => this.waiters.push(r));
  }

  private idle(): boolean {
    for (const n of this.pending.values()) if (n > 0) return false;
    return true;
  }
  private release(s: Sink): void {
    if (!this.held.delete(s)) return;
    if (this.held.size === 0) this.source.resume();
  }
  private gone(s: Sink): void {
    if (this.broken.has(s)) return;
    this.broken.add(s);
    this.pending.set(s, 0);
    this.release(s);
    this.onBroken();
    this.wake();
  }
  private settle(s: Sink): void {
    if (this.broken.has(s)) return;
    this.pending.set(s, Math.max(0, (this.pending.get(s) ?? 1) - 1));
    this.wake();
  }
  private wake(): void {
    if (this.idle()) for (const w of this.waiters.splice(0)) w();
  }
}
