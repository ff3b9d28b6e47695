/**
 * Shared primitives of the Substrate API contract: ids, the error body, version info.
 * This folder imports nothing but zod: both binaries (host and world agent), the host
 * proxy and doctor build and validate every JSON they exchange from these schemas.
 */
import { z } from "zod";
import { SPAN_ID_RE, WORLD_ID_RE } from "./ids.ts";

/** `wld_<uuidv7>` — a world (session or isolated). */
export const WorldId = z.string().regex(WORLD_ID_RE, "expected wld_<uuidv7>");
/** `spn_<uuidv7>` — one trace span (one command). */
export const SpanId = z.string().regex(SPAN_ID_RE, "expected spn_<uuidv7>");

// minted in ids.ts (zod-free: the hot path and the agent use them without the schemas)
export { newWorldId, newSpanId, newSessionId } from "./ids.ts";

/**
 * Machine-readable error codes. HTTP status mapping lives in `httpStatusFor`.
 * Keep in step with docs/API.md and docs/EXIT_CODE_TAXONOMY.md.
 */
export const ErrorCode = z.enum([
  "bad_request", // malformed JSON, schema violation (400)
  "not_found", // unknown route or id (404)
  "method_not_allowed", // (405)
  "payload_too_large", // (413)
  "rate_limited", // budget exhausted (429)
  "denied", // policy denied (403)
  "forbidden", // the caller may not do this (403): e.g. a project it cannot write (issue 13)
  "approval_required", // policy wants a human decision (409)
  "unsupported", // feature missing on this kernel/platform (501)
  "unavailable", // world/agent/dependency unavailable (503)
  "internal", // bug or unexpected failure (500)
]);
export type ErrorCode = z.infer<typeof ErrorCode>;

export const ErrorBody = z.strictObject({
  error: z.strictObject({
    code: ErrorCode,
    message: z.string().min(1),
    hint: z.string().optional(),
  }),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

const STATUS: Record<ErrorCode, number> = {
  bad_request: 400,
  not_found: 404,
  method_not_allowed: 405,
  payload_too_large: 413,
  rate_limited: 429,
  denied: 403,
  forbidden: 403,
  approval_required: 409,
  unsupported: 501,
  unavailable: 503,
  internal: 500,
};
export const httpStatusFor = (code: ErrorCode): number => STATUS[code];

export const errorBody = (code: ErrorCode, message: string, hint?: string): ErrorBody =>
  hint === undefined ? { error: { code, message } } : { error: { code, message, hint } };

/** The build targets we ship. */
export const Target = z.enum(["linux-x64", "linux-arm64", "darwin-x64", "darwin-arm64", "dev"]);
export type Target = z.infer<typeof Target>;

/** One version for both binaries: package version + git commit + agent content hash. */
export const VersionInfo = z.strictObject({
  version: z.string().min(1),
  commit: z.string().min(1),
  agent_hash: z.string().min(1),
  target: Target,
});
export type VersionInfo = z.infer<typeof VersionInfo>;
