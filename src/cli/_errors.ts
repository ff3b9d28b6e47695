/** The CLI's error type and exit codes live in src/errors.ts (libraries throw them too). */
export { ExitCode, CliError, signalExit } from "../errors.ts";
