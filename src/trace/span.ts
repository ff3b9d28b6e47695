/**
 * The span context: the ONLY reader of SUBSTRATE_SESSION_ID / SUBSTRATE_SPAN_ID, and the one
 * process-wide session id. Every span Substrate writes (host command spans, policy events,
 * the shell's builtin_command, replay, the proxy's rate_limit, the agent's execute and stream
 * spans) takes its session_id / parent_span from a SpanContext, so one `substrate -c`
 * process writes its policy events and its command span under one session id, and a nested
 * command's span names its parent.
 *
 * Zod-free on purpose (the `substrate -c` hot path): ids come from contract/ids.ts.
 */
import { isSpanId, newSessionId, newSpanId } from "../contract/ids.ts";

type Env = Record<string, string | undefined>;

let processSession: string | undefined;
/** This process's own session id (minted once, only when no outer session is inherited). */
const ownSession = (): string => (processSession ??= newSessionId());

/** The names a command's environment gets so nested substrate calls link to its span. */
export interface SpanEnv {
  SUBSTRATE_SPAN_ID: string;
  SUBSTRATE_SESSION_ID: string;
  [k: string]: string;
}

export class SpanContext {
  private constructor(
    /** the trace session all spans of this context belong to */
    readonly session_id: string,
    /** the enclosing command's span (a nested `substrate -c`), when there is one */
    readonly parent_span: string | undefined,
  ) {}

  /**
   * From a command's environment: an outer substrate (shell, `-c`, a shim, the agent for
   * an API caller) set SUBSTRATE_SESSION_ID and SUBSTRATE_SPAN_ID; otherwise this process's
   * own session and no parent. An invalid SUBSTRATE_SPAN_ID is ignored (never a parent).
   */
  static fromEnv(env: Env = process.env): SpanContext {
    const s = env.SUBSTRATE_SESSION_ID;
    const p = env.SUBSTRATE_SPAN_ID;
    return new SpanContext(s ? s : ownSession(), isSpanId(p) ? p : undefined);
  }

  /** A context for an explicit session (the agent's own spans, tests). */
  static of(sessionId: string, parentSpan?: string): SpanContext {
    return new SpanContext(sessionId, isSpanId(parentSpan) ? parentSpan : undefined);
  }

  /** A fresh span id in this context. */
  newSpanId(): string {
    return newSpanId();
  }

  /** The env additions for a command running as span `spanId` (children link to it). */
  envFor(spanId: string): SpanEnv {
    return { SUBSTRATE_SPAN_ID: spanId, SUBSTRATE_SESSION_ID: this.session_id };
  }

  /** A child context: spans written under `spanId`'s command (e.g. the agent's span of it). */
  child(spanId: string): SpanContext {
    return new SpanContext(this.session_id, spanId);
  }

  /** The identity fields every span of this context carries. */
  ids(spanId: string = newSpanId()): { session_id: string; span_id: string; parent_span?: string } {
    return { session_id: this.session_id, span_id: spanId, ...(this.parent_span ? { parent_span: this.parent_span } : {}) };
  }
}

/** The session id spans of this process use (`SUBSTRATE_SESSION_ID`, else this process's own). */
export const currentSessionId = (env: Env = process.env): string => SpanContext.fromEnv(env).session_id;

/** `SUBSTRATE_SPAN_ID` of an enclosing command, when it is a span id. */
export const parentSpanFromEnv = (env: Env = process.env): string | undefined => SpanContext.fromEnv(env).parent_span;
