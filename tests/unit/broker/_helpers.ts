/** Shared helpers for broker tests: temp HOME dirs (never the real ~/.substrate), policy files. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compileText } from "../../../src/broker/load.ts";
import type { CompiledPolicy } from "../../../src/broker/compile.ts";

export interface TempHome {
  home: string;
  policies: string;
  write(name: string, text: string): string;
  cleanup(): void;
}

export function tempHome(): TempHome {
  const home = mkdtempSync(join(tmpdir(), "substrate-broker-"));
  const policies = join(home, ".substrate", "policies");
  mkdirSync(policies, { recursive: true });
  return {
    home,
    policies,
    write(name, text) {
      const f = join(policies, name);
      writeFileSync(f, text);
      return f;
    },
    cleanup: () => rmSync(home, { recursive: true, force: true }),
  };
}

/** Compile a policy from YAML text (file name decides YAML/TOML and the id check). */
export function policyOf(yaml: string, file = "t.yaml", ctx = { home: "/home/u", project: "/proj" }): CompiledPolicy {
  return compileText(yaml, file, ctx);
}

/** A minimal enforce policy with the given command lists. */
export function enforce(commands: Record<string, string[] | boolean>, extra = ""): CompiledPolicy {
  const lines = ["id: t", "name: test", "mode: enforce", "commands:"];
  for (const [k, v] of Object.entries(commands)) lines.push(`  ${k}: ${JSON.stringify(v)}`);
  return policyOf(`${lines.join("\n")}\n${extra}`);
}
