/**
 * Issue 18.4, the pieces of back-pressure on their own (real kernel, no agent):
 * - PtyFlow (agent/world/ptyflow.ts): Bun's terminal master is found after a spawn, stopping
 *   the terminal blocks the command in write(2) (no byte arrives, nothing is signalled: the
 *   process is sleeping, not stopped), starting it delivers the rest; the slave fd is held only
 *   while stopped (the master still sees EOF at the end); resize works while stopped.
 * - SendWindow (src/api/flow.ts): pauses above the high water, resumes at the low one,
 *   callbacks of a reset client no longer count.
 * Never asserts on time: waits are for bytes or states.
 */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { openFds, PtyFlow } from "../../../agent/world/ptyflow.ts";
import { SendWindow, WriteHold } from "../../../src/api/flow.ts";

const state = (pid: number): string => /^State:\s+(\S)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? "?";
/** bash's child (the `seq` writing to the terminal). */
const writer = (bash: number): number => Number(readFileSync(`/proc/${bash}/task/${bash}/children`, "utf8").trim().split(" ")[0]);
const until = async (f: () => boolean, what: string) => {
  for (let i = 0; i < 2000; i++) {
    if (f()) return;
    await Bun.sleep(5);
  }
  throw new Error(`never: ${what}`);
};

test("PtyFlow: stopping Bun's terminal blocks the command (no SIGSTOP); starting it delivers everything", async () => {
  const N = 2_000_000;
  const total = 14_888_896 + "30 100\n".length; // bytes of `seq 1 2000000`, then `stty size`
  let out = "";
  let eof = false;
  let stopped: boolean | undefined;
  const before = openFds();
  const proc = Bun.spawn(["bash", "-c", `stty -opost; seq 1 ${N}; stty size`], {
    terminal: {
      cols: 80,
      rows: 24,
      data: (_t, d) => {
        out += Buffer.from(d).toString("latin1");
        stopped ??= flow!.stop(); // at the first output
      },
      exit: () => (eof = true),
    },
  });
  const flow = PtyFlow.openedSince(before);
  expect(flow).toBeDefined();
  await until(() => stopped !== undefined, "first output");
  expect(stopped).toBe(true);
  expect(flow!.stopped).toBe(true);
  const fdsStopped = readdirSync("/proc/self/fd").length;
  // What was already in the pty buffer still arrives; then nothing more: the command sleeps in write(2).
  let last = -1;
  await until(() => {
    const same = out.length === last;
    last = out.length;
    return same && state(writer(proc.pid)) === "S";
  }, "output stops");
  await Bun.sleep(200);
  expect(out.length).toBe(last); // held, not delivered
  expect(out.length).toBeLessThan(total); // and not finished
  expect(state(writer(proc.pid))).toBe("S"); // sleeping in write, not stopped (T) by a signal
  proc.terminal!.resize(100, 30); // the master answers while output is stopped
  flow!.start();
  expect(flow!.stopped).toBe(false);
  expect(readdirSync("/proc/self/fd").length).toBe(fdsStopped - 1); // the slave fd is let go
  await proc.exited;
  await until(() => eof, "the master's EOF");
  const lines = out.split("\n");
  expect(lines.at(-1)).toBe("");
  expect(lines.at(-2)).toBe("30 100");
  expect(lines.slice(0, N).every((l, i) => l === String(i + 1))).toBe(true);
  expect(lines.length).toBe(N + 2);
  expect(out.length).toBe(total);
  proc.terminal!.close();
});

test("PtyFlow: no terminal opened since the snapshot → none (the PTY is then not paused)", () => {
  expect(PtyFlow.openedSince(openFds())).toBeUndefined();
});

test("SendWindow: pause above high water, resume at low water; a reset forgets what was in flight", () => {
  const ev: string[] = [];
  const w = new SendWindow(100, 40);
  w.bind({ pause: () => ev.push("pause"), resume: () => ev.push("resume") });
  const a = w.track(60);
  const b = w.track(60); // 120 > 100
  expect(ev).toEqual(["pause"]);
  a(); // 60 > 40: still paused
  expect(ev).toEqual(["pause"]);
  const c = w.track(10);
  b(); // 10 <= 40
  expect(ev).toEqual(["pause", "resume"]);
  w.track(200);
  expect(ev).toEqual(["pause", "resume", "pause"]);
  w.reset(); // client gone: resumed, nothing in flight
  expect(ev).toEqual(["pause", "resume", "pause", "resume"]);
  expect(w.inFlight).toBe(0);
  c(); // a callback of the old client does not count
  expect(w.inFlight).toBe(0);
});

test("WriteHold: a full sink pauses the source until drain; flushed() waits for every write; a broken sink ends it once", async () => {
  const { EventEmitter } = await import("node:events");
  class FakeSink extends EventEmitter {
    cbs: (() => void)[] = [];
    full = false;
    write(_b: Uint8Array, cb: () => void): boolean {
      this.cbs.push(cb);
      return !this.full;
    }
  }
  const ev: string[] = [];
  const hold = new WriteHold({ pause: () => ev.push("pause"), resume: () => ev.push("resume") }, () => ev.push("broken"));
  const out = new FakeSink();
  const err = new FakeSink();
  hold.write(out, new Uint8Array(1));
  out.full = true;
  hold.write(out, new Uint8Array(1));
  hold.write(out, new Uint8Array(1)); // still full: one pause, one drain listener
  err.full = true;
  hold.write(err, new Uint8Array(1));
  expect(ev).toEqual(["pause"]);
  expect(out.listenerCount("drain")).toBe(1);
  out.emit("drain");
  expect(ev).toEqual(["pause"]); // err still full
  err.emit("drain");
  expect(ev).toEqual(["pause", "resume"]);
  let flushed = false;
  const f = hold.flushed().then(() => (flushed = true));
  for (const cb of out.cbs.splice(0)) cb();
  await Bun.sleep(0);
  expect(flushed).toBe(false); // err's write is not out yet
  err.emit("error", new Error("EPIPE")); // its reader went away
  await f;
  expect(ev).toEqual(["pause", "resume", "broken"]);
  hold.write(err, new Uint8Array(1)); // dropped
  expect(err.cbs.length).toBe(1);
  await hold.flushed();
});
