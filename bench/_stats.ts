/** Shared helpers for benchmarks: timing, percentiles, and the BENCH line format. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export interface Figure {
  name: string;
  median_ms: number;
  p99_ms: number;
  n: number;
  baseline?: string;
  ratio?: number;
  goal?: string;
}

export async function measure(n: number, fn: () => Promise<unknown> | unknown, warmup = Math.min(10, n)): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
  }
  return out.sort((a, b) => a - b);
}

export function figure(name: string, samples: number[], extra: Partial<Figure> = {}): Figure {
  return { name, median_ms: percentile(samples, 50), p99_ms: percentile(samples, 99), n: samples.length, ...extra };
}

/** Human line + one machine line `BENCH {json}` (parsed by bench/run.ts). */
export function report(f: Figure): void {
  const ratio = f.ratio !== undefined ? `  ${f.ratio.toFixed(2)}x ${f.baseline}` : "";
  const goal = f.goal ? `  (goal: ${f.goal})` : "";
  console.log(`${f.name.padEnd(48)} median ${f.median_ms.toFixed(3)} ms  p99 ${f.p99_ms.toFixed(3)} ms  n=${f.n}${ratio}${goal}`);
  console.log(`BENCH ${JSON.stringify(f)}`);
}
