/** The repository's import graph (static and dynamic imports of relative .ts paths), for the architecture test. */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

export const ROOT = resolve(import.meta.dir, "../..");

function files(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...files(p));
    else if (p.endsWith(".ts") && !p.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

/** file (repo-relative) → imported files (repo-relative); type-only imports excluded. */
export function importGraph(dirs = ["src", "agent"]): Map<string, Set<string>> {
  const g = new Map<string, Set<string>>();
  const re = /(?:^|\n)\s*(?:import|export)\s+(?!type\b)(?:[^"';]*?\sfrom\s+)?["'](\.[^"']+\.ts)["']|import\(\s*["'](\.[^"']+\.ts)["']\s*\)/g;
  for (const d of dirs)
    for (const f of files(join(ROOT, d))) {
      const src = readFileSync(f, "utf8").replace(/\/\*[\s\S]*?\*\//g, "");
      const deps = new Set<string>();
      for (const m of src.matchAll(re)) deps.add(relative(ROOT, resolve(dirname(f), (m[1] ?? m[2])!)));
      g.set(relative(ROOT, f), deps);
    }
  return g;
}

/** Strongly connected components with more than one file (Tarjan). */
export function cycles(g: Map<string, Set<string>>): string[][] {
  let i = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const on = new Set<string>();
  const st: string[] = [];
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, i);
    low.set(v, i++);
    st.push(v);
    on.add(v);
    for (const w of g.get(v) ?? []) {
      if (!g.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const c: string[] = [];
      let w: string;
      do {
        w = st.pop()!;
        on.delete(w);
        c.push(w);
      } while (w !== v);
      if (c.length > 1) out.push(c.sort());
    }
  };
  for (const v of g.keys()) if (!idx.has(v)) visit(v);
  return out;
}
