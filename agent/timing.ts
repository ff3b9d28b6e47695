/**
 * Agent-side phase marks for bench/hotpath.ts (issue 17): with SUBSTRATE_TIMING=1 in the
 * agent's environment, every command start prints one line to the agent's stderr,
 * `substrate-agent-timing: gate=… resolve=… world=… spawned=… started=… exited=… span=…`
 * (ms since the request reached start()), and the caller's policy helper one line per gate
 * (`substrate-policyd-timing: …`). Off (one env read), it costs nothing.
 */
const on = process.env.SUBSTRATE_TIMING === "1";

export interface Phases {
  mark(name: string): void;
  dump(): void;
}

const off: Phases = { mark() {}, dump() {} };

export function phases(label: string): Phases {
  if (!on) return off;
  const t0 = performance.now();
  const marks: string[] = [];
  let done = false;
  return {
    mark: (n) => void marks.push(`${n}=${(performance.now() - t0).toFixed(2)}`),
    dump: () => {
      if (done) return;
      done = true;
      process.stderr.write(`${label}: ${marks.join(" ")}\n`);
    },
  };
}
