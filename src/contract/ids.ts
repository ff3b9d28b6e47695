/**
 * Trace and world ids: the one regex per id kind and the one place each id is minted.
 * Imports nothing (not even zod): the `substrate -c` hot path, the agent and the contract's
 * zod schemas (common.ts) all use these, so an id format cannot drift between copies.
 */

/** `spn_<uuidv7>`: one trace span (one command). */
export const SPAN_ID_RE = /^spn_[0-9a-f-]{36}$/;
/** `ses_<uuidv7>`: one trace session (a shell, a `-c` process and its children). */
export const SESSION_ID_RE = /^ses_[0-9a-f-]{36}$/;
/** `wld_<uuidv7>`: a world (session or isolated). */
export const WORLD_ID_RE = /^wld_[0-9a-f-]{36}$/;

export const newSpanId = (): string => `spn_${Bun.randomUUIDv7()}`;
export const newSessionId = (): string => `ses_${Bun.randomUUIDv7()}`;
export const newWorldId = (): string => `wld_${Bun.randomUUIDv7()}`;

export const isSpanId = (s: unknown): s is string => typeof s === "string" && SPAN_ID_RE.test(s);
