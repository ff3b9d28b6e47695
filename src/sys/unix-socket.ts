/** Unix socket files: is someone serving one, and replacing a stale one safely. */
import { lstatSync, unlinkSync } from "node:fs";
import { createConnection } from "node:net";

/** Does something accept connections on this socket path? */
export function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

export type StaleSocketProblem = "not_a_socket" | "in_use";

/**
 * Make `path` free to bind: nothing there, or a socket file nobody answers on (removed).
 * Never removes a non-socket file, never takes a socket a live process serves: those are
 * reported through `fail` (the caller picks its own error type and exit code).
 */
export async function clearStaleSocket(path: string, fail: (problem: StaleSocketProblem, message: string) => Error): Promise<void> {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw fail("not_a_socket", `${path} exists and is not a socket; refusing to replace it`);
  if (await socketAnswers(path)) throw fail("in_use", `another process is already serving ${path}`);
  unlinkSync(path);
}
