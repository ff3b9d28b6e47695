/**
 * Egress decisions → the trace: one `egress` span per decision (the gateway's record in the
 * span's `egress` field), a `rate_limit` span when a command's egress budget closes a
 * connection. Parent = the command's execute span; session = the command's session.
 */
import type { EgressEvent } from "../../src/contract/net.ts";
import { isSpanId, newSpanId } from "../../src/contract/ids.ts";
import { appendSpanSync } from "../../src/trace/writer.ts";
import { currentSessionId } from "../../src/trace/span.ts";
import type { CommandEgress } from "./gateway.ts";

function write(event_type: "egress" | "rate_limit", ev: EgressEvent, cmd: CommandEgress | undefined, reason?: string): void {
  try {
    appendSpanSync({
      ts: new Date().toISOString(),
      event_type,
      session_id: cmd?.sessionId ?? currentSessionId(),
      span_id: newSpanId(),
      ...(isSpanId(cmd?.spanId) ? { parent_span: cmd!.spanId } : {}),
      component: "world",
      world_id: ev.world_id,
      world_backend: "linux-local",
      agent_id: cmd?.agentId ?? "human",
      ...(ev.policy_id ? { policy_id: ev.policy_id } : {}),
      ...(reason ? { reason } : { reason: ev.reason }),
      duration_ms: ev.duration_ms,
      egress: ev,
    });
  } catch (e) {
    process.stderr.write(`substrate-world-agent: egress span: ${(e as Error).message}\n`);
  }
}

export const recordEgressEvent = (ev: EgressEvent, cmd: CommandEgress | undefined): void => write("egress", ev, cmd);
export const recordEgressRateLimit = (ev: EgressEvent, cmd: CommandEgress | undefined, why: string): void => write("rate_limit", ev, cmd, why);
