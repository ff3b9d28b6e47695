/**
 * Exit codes for an agent's error code (docs/EXIT_CODE_TAXONOMY.md): the one mapping, used by
 * the /v1/stream client (io.ts), the CLI's fast path (src/cli/fast.ts) and the host span the
 * agent writes for the fast path (agent-gate.ts). Zod-free on purpose (the hot path).
 */
import type { ErrorCode } from "../contract/common.ts";
import { ExitCode } from "../errors.ts";

/** Exit code of a CLI run refused by the agent (docs/EXIT_CODE_TAXONOMY.md). */
export function exitForError(code: ErrorCode | string): number {
  switch (code) {
    case "bad_request":
    case "not_found":
    case "payload_too_large":
    case "method_not_allowed":
      return ExitCode.USAGE;
    case "denied":
    case "forbidden": // issue 13: e.g. a project the caller cannot write
    case "approval_required":
      return ExitCode.DENIED;
    case "unsupported":
      return ExitCode.UNSUPPORTED;
    case "unavailable":
      return ExitCode.UNAVAILABLE;
    default:
      return ExitCode.INTERNAL;
  }
}
