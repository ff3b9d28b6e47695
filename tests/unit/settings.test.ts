/**
 * The settings table (src/settings.ts) is the one list of SUBSTRATE_* variables: every name
 * the source reads is in it, docs/CONFIG.md's table is rendered from it, and `~/.substrate`
 * resolves one way (the trace path honours SUBSTRATE_HOME).
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { ENV_SETTINGS, pathsOf, readSettings, renderEnvTable } from "../../src/settings.ts";
import { traceFilePath } from "../../src/trace/writer.ts";
import { effectiveConfig, rootlessSocketPath } from "../../src/config.ts";

const ROOT = resolve(import.meta.dir, "../..");

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (p.endsWith(".ts")) out.push(p);
  }
  return out;
}

describe("settings", () => {
  test("every SUBSTRATE_* name in src/ and agent/ is in ENV_SETTINGS (build-time SUBSTRATE_*__ defines excepted)", () => {
    const known = new Set(ENV_SETTINGS.map((s) => s.name));
    const missing = new Set<string>();
    for (const f of [...sources(join(ROOT, "src")), ...sources(join(ROOT, "agent"))]) {
      for (const m of readFileSync(f, "utf8").matchAll(/SUBSTRATE_[A-Z0-9_]*[A-Z0-9]\b/g)) {
        if (!known.has(m[0])) missing.add(`${m[0]} (${f.slice(ROOT.length + 1)})`);
      }
    }
    expect([...missing]).toEqual([]);
  });

  test("names are unique and documented", () => {
    const names = ENV_SETTINGS.map((s) => s.name);
    expect(new Set(names).size).toBe(names.length);
    for (const s of ENV_SETTINGS) expect(s.describe.length).toBeGreaterThan(10);
  });

  test("docs/CONFIG.md's environment table is the rendered table", () => {
    const doc = readFileSync(join(ROOT, "docs/CONFIG.md"), "utf8");
    const m = /<!-- env-table:begin[^>]*-->\n([\s\S]*?)\n<!-- env-table:end -->/.exec(doc);
    expect(m).not.toBeNull();
    expect(m![1]).toBe(renderEnvTable());
  });

  test("~/.substrate resolves one way: SUBSTRATE_HOME moves config, trace, rootless socket alike", () => {
    const env = { HOME: "/home/u", SUBSTRATE_HOME: "/srv/sub" };
    expect(pathsOf(env).home).toBe("/srv/sub");
    expect(traceFilePath(env)).toBe("/srv/sub/trace.jsonl");
    expect(rootlessSocketPath(env)).toBe("/srv/sub/run/substrate.sock");
    expect(effectiveConfig({ env: { ...env, SUBSTRATE_WORLD_SOCKET: "/x.sock" } }).socket_path).toBe("/x.sock");
    expect(traceFilePath({ HOME: "/home/u" })).toBe("/home/u/.substrate/trace.jsonl");
    expect(traceFilePath({ HOME: "/home/u", SUBSTRATE_TRACE: "/t.jsonl", SUBSTRATE_HOME: "/srv/sub" })).toBe("/t.jsonl");
  });

  test("readSettings: SUBSTRATE_WORLD values", () => {
    expect(readSettings({ SUBSTRATE_WORLD: "disabled" }).world).toBe(false);
    expect(readSettings({ SUBSTRATE_WORLD: "ON" }).world).toBe(true);
    expect(readSettings({}).world).toBeUndefined();
    expect(readSettings({}).agentId).toBe("human");
  });
});
