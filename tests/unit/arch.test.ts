/**
 * Keeps docs/ARCHITECTURE.md's module table true: every import between modules (static or
 * dynamic; `import type` is free) is allowed by the table's "may import" column, and no
 * file-level import cycle exists beyond the named exceptions (which must still exist: a
 * fixed exception is removed from the doc and from here).
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { cycles, importGraph, ROOT } from "./_imports.ts";

/** A file's module: `agent`, a folder under src/ (`run`), or a single file src/X.ts (`config`). */
const moduleOf = (f: string): string => {
  const p = f.split("/");
  if (p[0] === "agent") return "agent";
  return p.length === 2 ? p[1]!.replace(/\.ts$/, "") : p[1]!;
};

/** The table: module → allowed modules ("*" = anything in src/). */
function table(): Map<string, Set<string>> {
  const doc = readFileSync(join(ROOT, "docs/ARCHITECTURE.md"), "utf8");
  const section = doc.slice(doc.indexOf("## Modules and what they may import"));
  const out = new Map<string, Set<string>>();
  for (const line of section.split("\n")) {
    const cells = line.split("|").map((c) => c.trim());
    if (cells.length < 4 || !cells[1]!.startsWith("`")) continue;
    const name = /`([^`]+)`/.exec(cells[1]!)![1]!;
    const key = name === "agent/" ? "agent" : name.startsWith("src/") ? moduleOf(name.replace(/\/$/, "/x.ts")) : null;
    if (key === null) continue;
    const may = cells[3]!;
    out.set(key, may.includes("anything in `src/`") ? new Set(["*"]) : new Set([...may.matchAll(/`([a-z-]+)`/g)].map((m) => m[1]!)));
  }
  return out;
}

/** Known exceptions (docs/ARCHITECTURE.md lists them): allowed edges and cycles. */
const EDGE_EXCEPTIONS: [RegExp, string][] = [
  [/^src\/lifecycle\/rootless\.ts$/, "agent/world/userns.ts"],
  [/^src\/mcp\//, "src/cli/_entry-run.ts"],
  // the agent's policy helper runs the pipeline's own agent-side gate (docs/ARCHITECTURE.md)
  [/^agent\/policyd\.ts$/, "src/run/agent-gate.ts"],
  [/^agent\/policyd\.ts$/, "src/broker/load.ts"],
];
const CYCLE_EXCEPTIONS = [
  ["src/cli/completions.ts", "src/cli/main.ts"],
  ["agent/world/manager.ts", "agent/world/session.ts", "agent/world/spares.ts"],
];

describe("architecture (docs/ARCHITECTURE.md)", () => {
  const g = importGraph();
  const allowed = table();

  test("the graph sees static and dynamic imports", () => {
    expect(g.get("src/world/linux-local.ts")).toContain("src/lifecycle/paths.ts"); // static
    expect(g.get("src/run/index.ts")).toContain("src/run/execute.ts"); // dynamic
  });

  test("the table names every module of the tree", () => {
    const mods = new Set([...g.keys()].map(moduleOf));
    expect([...mods].filter((m) => !allowed.has(m)).sort()).toEqual([]);
  });

  test("every import between modules is allowed by the table", () => {
    const bad: string[] = [];
    for (const [f, deps] of g) {
      const a = moduleOf(f);
      const may = allowed.get(a);
      for (const d of deps) {
        if (!existsSync(join(ROOT, d))) continue; // a typo is tsc's business
        const b = moduleOf(d);
        if (a === b || may?.has("*") && d.startsWith("src/") || may?.has(b)) continue;
        if (EDGE_EXCEPTIONS.some(([from, to]) => from.test(f) && d === to)) continue;
        bad.push(`${f} → ${d} (${a} may not import ${b})`);
      }
    }
    expect(bad).toEqual([]);
  });

  test("no import cycles beyond the named exceptions (which still exist)", () => {
    const found = cycles(g).map((c) => c.join(" ↔ "));
    const known = CYCLE_EXCEPTIONS.map((c) => [...c].sort().join(" ↔ "));
    expect(found.filter((c) => !known.includes(c))).toEqual([]);
  });

  test("the pipeline's own cycles are gone: cli/run ↔ cli/_pty, lifecycle ↔ world/linux-local", () => {
    const found = cycles(g).flat();
    for (const f of ["src/cli/run.ts", "src/cli/_pty.ts", "src/world/linux-local.ts", "src/lifecycle/manual.ts", "src/lifecycle/rootless.ts"]) expect(found).not.toContain(f);
  });
});
