/**
 * CLI glue shared by `substrate host doctor` and `substrate world doctor`: flag validation
 * (bad flag → exit 2, citty itself ignores unknown flags), config errors → exit 2, anything
 * unexpected → exit 1 with one line, never a stack trace; JSON or text on stdout.
 */
import { CliError } from "../errors.ts";
import { resolveWorldSettings, type WorldFlags } from "./config.ts";
import { EXIT, runHostDoctor } from "./host.ts";
import { realSystem, type HostSystem } from "./system.ts";
import { runWorldDoctor, type WorldDoctorSource } from "./world.ts";

export const DOCTOR_ARGS = {
  json: { type: "boolean", description: "print the versioned JSON envelope instead of text" },
  world: { type: "boolean", description: "force world isolation on (--no-world: off) for this report" },
} as const;

const ALLOWED = new Set(["--json", "--world", "--no-world", "--json=true", "--json=false"]);

/** The first argument we do not understand, if any. */
export function unknownArg(rawArgs: string[]): string | null {
  for (const a of rawArgs) if (!ALLOWED.has(a)) return a;
  return null;
}

export interface DoctorCliDeps {
  sys?: HostSystem;
  worldSource?: WorldDoctorSource;
  out?: (s: string) => void;
  err?: (s: string) => void;
}

/** Runs one doctor and returns the exit code (the caller sets process.exitCode). */
export async function runDoctorCli(
  kind: "host" | "world",
  rawArgs: string[],
  flags: WorldFlags & { json?: boolean },
  deps: DoctorCliDeps = {},
): Promise<number> {
  const out = deps.out ?? ((s: string) => process.stdout.write(s));
  const err = deps.err ?? ((s: string) => process.stderr.write(s));
  const bad = unknownArg(rawArgs);
  if (bad !== null) {
    err(`substrate ${kind} doctor: unknown argument ${bad}\nusage: substrate ${kind} doctor [--json] [--world|--no-world]\n`);
    return EXIT.usage;
  }
  try {
    const sys = deps.sys ?? realSystem();
    const settings = resolveWorldSettings(sys, { world: flags.world });
    const r = kind === "host" ? await runHostDoctor(sys, settings) : await runWorldDoctor(sys, settings, deps.worldSource);
    out(flags.json ? `${JSON.stringify(r.envelope, null, 2)}\n` : r.text);
    return r.exitCode;
  } catch (e) {
    if (e instanceof CliError) {
      // e.g. a malformed ~/.substrate/config.toml → usage/config error (2)
      err(`substrate ${kind} doctor: ${e.message}\n${e.hint ? `hint: ${e.hint}\n` : ""}`);
      return e.exitCode;
    }
    const m = e instanceof Error ? e.message : String(e);
    err(`substrate ${kind} doctor: internal error: ${m}\nhint: re-run with SUBSTRATE_DEBUG=1 and report it\n`);
    if (process.env.SUBSTRATE_DEBUG) err(`${(e as Error).stack ?? ""}\n`);
    return EXIT.internal;
  }
}
