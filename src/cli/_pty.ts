/**
 * `substrate --pty -c CMD`: the same pipeline as `-c` (src/run/), io "pty". The /v1/stream
 * client lives in src/run/io.ts; it is re-exported here for existing callers.
 */
import type { RunOptions } from "./run.ts";

export { runStream, exitForError, StreamConnectError, type StreamRunOptions } from "../run/io.ts";

export async function runPtyCommandLine(o: Omit<RunOptions, "pty">): Promise<number> {
  const { runCommandLine } = await import("./run.ts");
  return runCommandLine({ ...o, pty: true });
}
