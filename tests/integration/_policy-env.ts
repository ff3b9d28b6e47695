/**
 * Environment for policy integration tests: a temp HOME with ~/.substrate/policies, a temp
 * trace file, and a directory of FAKE commands (rm, sudo, curl, touch...) first on PATH so
 * that a broken gate could never run a real destructive command on the host.
 * `substrate` runs from source (dist/ may predate these commands).
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { DEFAULT_POLICY_YAML } from "../../src/broker/default-policy.ts";

export const ROOT = resolve(import.meta.dir, "../..");
export const SUBSTRATE = [process.execPath, join(ROOT, "src/main.ts")];

export interface PolicyEnv {
  dir: string;
  home: string;
  policies: string;
  fakebin: string;
  trace: string;
  env: Record<string, string>;
  writePolicy(name: string, text: string): string;
  enforceDefault(): string;
  /** the policy events in the trace (command_start/complete spans of the run itself are skipped) */
  traceLines(): Record<string, unknown>[];
  cleanup(): void;
}

export function policyEnv(): PolicyEnv {
  const dir = mkdtempSync(join(tmpdir(), "substrate-policy-it-"));
  const home = join(dir, "home");
  const policies = join(home, ".substrate", "policies");
  const fakebin = join(dir, "fakebin");
  mkdirSync(policies, { recursive: true });
  mkdirSync(fakebin, { recursive: true });
  for (const name of ["rm", "sudo", "curl", "chmod"]) {
    const f = join(fakebin, name);
    writeFileSync(f, `#!/bin/sh\necho "fake ${name} $*"\n`);
    chmodSync(f, 0o755);
  }
  const trace = join(dir, "trace.jsonl");
  const env = {
    PATH: `${fakebin}:/usr/local/bin:/usr/bin:/bin`,
    HOME: home,
    SUBSTRATE_TRACE: trace,
    SUBSTRATE_WORLD: "disabled",
    LANG: "C.UTF-8",
  };
  return {
    dir,
    home,
    policies,
    fakebin,
    trace,
    env,
    writePolicy(name, text) {
      const f = join(policies, name);
      writeFileSync(f, text);
      return f;
    },
    enforceDefault() {
      return this.writePolicy("default.yaml", DEFAULT_POLICY_YAML.replace(/^mode: observe.*$/m, "mode: enforce"));
    },
    traceLines() {
      try {
        return readFileSync(trace, "utf8")
          .split("\n")
          .filter(Boolean)
          .map((l) => JSON.parse(l))
          .filter((s) => ["policy_denied", "policy_violation", "approval"].includes(s.event_type));
      } catch {
        return [];
      }
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export function substrate(e: PolicyEnv, args: string[], o: { cwd?: string; env?: Record<string, string>; stdin?: "pipe" | "ignore" } = {}) {
  const p = Bun.spawnSync([...SUBSTRATE, ...args], {
    cwd: o.cwd ?? e.home,
    env: { ...e.env, ...o.env },
    stdin: o.stdin ?? "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: 60_000,
  });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}
