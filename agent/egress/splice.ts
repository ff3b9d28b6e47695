/**
 * Byte splicing between two Bun sockets (used by the gateway and by the in-world helper),
 * with back-pressure: `write()` takes what the kernel accepts, the remainder is queued (a
 * copy: the runtime reuses its read buffer) and the source is paused until the destination
 * drains. Half-close is forwarded (FIN on one side → `shutdown()` of the other once its queue
 * is flushed; in Bun `end()` is a full close, and every socket here is `allowHalfOpen`); a
 * close of either side ends the other and, if it has not closed 10 s later, resets it (a
 * client that aborts must not wedge the upstream; see the spike notes).
 *
 * Every socket handed to `splice` carries a `Conn` as its `data`; `connHandlers` is the
 * handler set a `Bun.listen`/`Bun.connect` call uses so that the Conn's callbacks fire.
 */
import type { Socket } from "bun";

export interface Conn {
  onData?: (b: Uint8Array) => void;
  onDrain?: () => void;
  onEnd?: () => void;
  onClose?: () => void;
  /** Set once the socket is gone. */
  closed?: boolean;
  [k: string]: unknown;
}

export type ConnSocket = Socket<Conn>;

export const connHandlers = {
  data(s: ConnSocket, b: Uint8Array) {
    s.data.onData?.(b);
  },
  drain(s: ConnSocket) {
    s.data.onDrain?.();
  },
  end(s: ConnSocket) {
    s.data.onEnd?.();
  },
  close(s: ConnSocket) {
    if (s.data.closed) return;
    s.data.closed = true;
    s.data.onClose?.();
  },
  error(s: ConnSocket) {
    if (s.data.closed) return;
    s.data.closed = true;
    s.data.onClose?.();
  },
};

/** A write queue in front of one socket. */
export class Writer {
  private q: Uint8Array[] = [];
  queued = 0;
  constructor(private readonly s: ConnSocket) {}
  /** Returns true when everything went to the kernel. */
  write(b: Uint8Array): boolean {
    if (this.s.data.closed) return true;
    if (this.q.length > 0) {
      this.q.push(b.slice());
      this.queued += b.length;
      return false;
    }
    const n = this.s.write(b);
    const w = n < 0 ? 0 : n;
    if (w < b.length) {
      const rest = b.slice(w);
      this.q.push(rest);
      this.queued += rest.length;
      return false;
    }
    return true;
  }
  /** On drain: push what is queued; true when the queue is empty. */
  flush(): boolean {
    while (this.q.length > 0 && !this.s.data.closed) {
      const b = this.q[0]!;
      const n = this.s.write(b);
      const w = n < 0 ? 0 : n;
      if (w < b.length) {
        this.q[0] = b.slice(w);
        this.queued -= w;
        return false;
      }
      this.q.shift();
      this.queued -= b.length;
    }
    if (this.s.data.closed) {
      this.q = [];
      this.queued = 0;
    }
    return true;
  }
  get empty(): boolean {
    return this.q.length === 0;
  }
}

export interface SpliceHooks {
  /**
   * Bytes moved: `up` = client → upstream. Return a number of ms to hold the source back
   * (rate pacing), "close" to reset both sides (budget spent), or nothing.
   */
  onBytes?: (dir: "up" | "down", n: number) => number | "close" | void;
  /** Once, when both sides are gone. */
  onDone?: () => void;
}

const KILL_AFTER_MS = 10_000;

/**
 * Splice `client` ↔ `upstream`. `pendingUp` are bytes the client already sent (after a
 * handshake) that go to the upstream first; `pendingDown` likewise towards the client.
 * `preface` goes to the client before anything else and is not counted (the proxy's own
 * "200 Connection established" / SOCKS success reply, written by the gateway after a handoff).
 */
export function splice(client: ConnSocket, upstream: ConnSocket, hooks: SpliceHooks = {}, pendingUp?: Uint8Array, pendingDown?: Uint8Array, preface?: Uint8Array): void {
  const wUp = new Writer(upstream);
  const wDown = new Writer(client);
  let done = false;
  const finish = () => {
    if (done || !client.data.closed || !upstream.data.closed) return;
    done = true;
    hooks.onDone?.();
  };
  const resetBoth = () => {
    try {
      client.terminate();
    } catch {}
    try {
      upstream.terminate();
    } catch {}
  };

  const ended = { up: false, down: false };
  const direction = (src: ConnSocket, dst: ConnSocket, w: Writer, dir: "up" | "down"): (() => void) => {
    let srcEnded = false;
    let holds = 0; // back-pressure + pacing: the source runs when nothing holds it
    const hold = () => {
      if (holds++ === 0) src.pause();
    };
    const release = () => {
      if (--holds === 0 && !src.data.closed) src.resume();
    };
    // FIN from src, everything flushed: half-close dst; once both ways are done, close both.
    const halfClose = () => {
      if (ended[dir]) return;
      ended[dir] = true;
      if (!dst.data.closed) dst.shutdown();
      if (ended.up && ended.down) {
        if (!client.data.closed) client.end();
        if (!upstream.data.closed) upstream.end();
      }
    };
    src.data.onData = (b) => {
      const r = hooks.onBytes?.(dir, b.length);
      if (r === "close") {
        resetBoth();
        return;
      }
      if (!w.write(b)) hold();
      if (typeof r === "number" && r > 0) {
        hold();
        setTimeout(release, r);
      }
    };
    dst.data.onDrain = () => {
      if (!w.empty && w.flush()) {
        release();
        if (srcEnded) halfClose();
      }
    };
    src.data.onEnd = () => {
      srcEnded = true;
      if (w.empty) halfClose();
    };
    const prevClose = src.data.onClose;
    src.data.onClose = () => {
      prevClose?.();
      srcEnded = true;
      // src is gone entirely: dst gets what is queued, then a full close.
      if (!dst.data.closed) {
        if (w.empty) dst.end();
        else {
          const t0 = dst.data.onDrain;
          dst.data.onDrain = () => {
            t0?.();
            if (w.empty && !dst.data.closed) dst.end();
          };
        }
        const t = setTimeout(() => {
          try {
            dst.terminate();
          } catch {}
        }, KILL_AFTER_MS);
        (t as { unref?: () => void }).unref?.();
      }
      finish();
    };
    return hold;
  };
  const holdClient = direction(client, upstream, wUp, "up");
  const holdUpstream = direction(upstream, client, wDown, "down");
  if (preface && preface.length > 0 && !wDown.write(preface)) holdUpstream();
  if (pendingDown && pendingDown.length > 0) {
    hooks.onBytes?.("down", pendingDown.length);
    if (!wDown.write(pendingDown)) holdUpstream();
  }
  if (pendingUp && pendingUp.length > 0) {
    hooks.onBytes?.("up", pendingUp.length);
    if (!wUp.write(pendingUp)) holdClient();
  }
  // Either side may have gone while we wired things up.
  if (client.data.closed) client.data.onClose?.();
  if (upstream.data.closed) upstream.data.onClose?.();
}
