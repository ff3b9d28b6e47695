/**
 * Errors a user can act on: one clear line, a hint, and an exit code
 * (docs/EXIT_CODE_TAXONOMY.md). Thrown by libraries (config, the pipeline, doctor) and
 * printed by the CLI (src/cli/main.ts reportError); src/cli/_errors.ts re-exports them.
 */
export const ExitCode = {
  OK: 0,
  INTERNAL: 1,
  USAGE: 2,
  UNAVAILABLE: 3,
  UNSUPPORTED: 4,
  DENIED: 126,
} as const;

export class CliError extends Error {
  override name = "CliError";
  constructor(
    readonly exitCode: number,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

/** Shell convention: killed by signal N → 128 + N. */
export const signalExit = (sig: string | null, code: number | null): number =>
  // node:os only when a signal is to be named (its import is on every start otherwise)
  sig ? 128 + (((require("node:os") as typeof import("node:os")).constants.signals as Record<string, number>)[sig] ?? 0) : (code ?? 1);
