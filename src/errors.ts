import { constants as osConstants } from "node:os";

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
  sig ? 128 + ((osConstants.signals as Record<string, number>)[sig] ?? 0) : (code ?? 1);
