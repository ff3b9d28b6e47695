import { expect, test } from "bun:test";
import {
  AuditLine,
  BudgetStatus,
  RequestScopesRequest,
  RequestScopesResponse,
  ScopeToken,
  StreamAttach,
  StreamControl,
  StreamServerMessage,
  StreamStart,
} from "../../../src/contract/index.ts";

const rt = <T>(schema: { parse(v: unknown): T }, v: T) => expect(schema.parse(JSON.parse(JSON.stringify(v)))).toEqual(v);
const SPN = "spn_01a201cc-48ac-717a-bf2d-ef524a961adc";
const WLD = "wld_01a201cc-477c-76a9-bacc-44c8c21f9658";
const PTY = "pty_01a201cc-48ac-717c-a1ed-2c907ebc1890";

test("StreamStart: defaults, exactly one of cmd/argv, agent_id required", () => {
  const s = StreamStart.parse({ type: "start", cmd: "vim", agent_id: "a" });
  expect(s).toEqual({ type: "start", cmd: "vim", agent_id: "a", cols: 80, rows: 24, pty: true, detachable: false, isolated: false, keep_background: false });
  rt(StreamStart, s);
  expect(StreamStart.safeParse({ type: "start", agent_id: "a" }).success).toBe(false);
  expect(StreamStart.safeParse({ type: "start", cmd: "x", argv: ["x"], agent_id: "a" }).success).toBe(false);
  const noAgent = StreamStart.safeParse({ type: "start", cmd: "x", agent_id: " " });
  expect(noAgent.success).toBe(false);
  expect(JSON.stringify(noAgent.error)).toContain("agent_id is required for API calls");
  expect(StreamStart.safeParse({ type: "start", cmd: "x", agent_id: "a", cols: 0 }).success).toBe(false);
  expect(StreamStart.safeParse({ type: "start", cmd: "x", agent_id: "a", extra: 1 }).success).toBe(false);
});

test("control messages and server messages round-trip", () => {
  rt(StreamAttach, { type: "attach", session_id: PTY, agent_id: "a" });
  rt(StreamControl, { type: "resize", cols: 120, rows: 40 });
  rt(StreamControl, { type: "signal", signal: "SIGINT" });
  rt(StreamControl, { type: "eof" });
  rt(StreamControl, { type: "detach" });
  expect(StreamControl.safeParse({ type: "signal", signal: "SIGSEGV" }).success).toBe(false);
  rt(StreamServerMessage, { type: "started", session_id: PTY, span_id: SPN, world_id: WLD, pid: 7, pty: true, detachable: false });
  rt(StreamServerMessage, { type: "attached", session_id: PTY, span_id: SPN, replayed_bytes: 10, truncated: false });
  rt(StreamServerMessage, { type: "stderr", data_b64: "aGk=" });
  rt(StreamServerMessage, { type: "exit", code: 3, signal: null });
  rt(StreamServerMessage, { type: "exit", code: 137, signal: "SIGKILL", timed_out: true });
  rt(StreamServerMessage, { type: "error", code: "rate_limited", message: "budget", hint: "h" });
  expect(StreamServerMessage.safeParse({ type: "error", code: "nope", message: "x" }).success).toBe(false);
});

test("scopes, budget status and audit line round-trip", () => {
  rt(RequestScopesRequest, { agent_id: "a", scopes: ["net:example.com:443", "fs.write:/tmp/x"], reason: "fetch" });
  expect(RequestScopesRequest.safeParse({ agent_id: "a", scopes: [] }).success).toBe(false);
  expect(RequestScopesRequest.safeParse({ agent_id: "a", scopes: ["root:/"] }).success).toBe(false);
  rt(RequestScopesResponse, { agent_id: "a", granted: ["net:x"], scopes: ["exec:git", "net:x"] });
  rt(ScopeToken, { token: "sct_01a201cc-48ac-717c-a1ed-2c907ebc1890", agent_id: "a", span_id: SPN, world_id: WLD, scopes: [], issued_at: "2026-11-22T05:48:14.910Z" });
  rt(BudgetStatus, {
    agent_id: "a",
    budget: { max_execs: 2 },
    used: { execs: 2, runtime_ms: 10, egress_bytes: 0 },
    remaining: { max_execs: 0 },
    exhausted: ["max_execs"],
  });
  rt(AuditLine, {
    ts: "2026-11-22T05:48:14.910Z",
    method: "POST",
    path: "/v1/execute",
    status: 200,
    duration_ms: 1.5,
    agent_id: "a",
    auth: "peercred",
    peer: { pid: 1, uid: 0, gid: 0 },
    traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    error: null,
  });
});

test("StreamStart.host_span (issue 17, the CLI's fast path): round trip; strict; absolute trace path", () => {
  const host = {
    span_id: SPN,
    session_id: "ses_01a201cc-48ac-717a-bf2d-ef524a961add",
    component: "shell" as const,
    trace: "/home/u/.substrate/trace.jsonl",
    replay: { path: "/usr/bin:/bin", env_hash: `sha256:${"a".repeat(64)}`, umask: "0022", locale: "C.UTF-8", world_image_version: "0.1.0+abc.def" },
  };
  const s = StreamStart.parse({ type: "start", argv: ["bash", "-c", "true"], agent_id: "a", pty: false, host_span: host });
  expect(s.host_span).toEqual(host);
  rt(StreamStart, s);
  rt(StreamStart, StreamStart.parse({ type: "start", cmd: "x", agent_id: "a", host_span: { ...host, parent_span: SPN, replay: { ...host.replay, path: null, locale: null, world_image_version: null } } }));
  const bad = (h: unknown) => StreamStart.safeParse({ type: "start", cmd: "x", agent_id: "a", host_span: h }).success;
  expect(bad({ ...host, trace: "rel/trace.jsonl" })).toBe(false);
  expect(bad({ ...host, component: "api" })).toBe(false);
  expect(bad({ ...host, extra: 1 })).toBe(false);
  expect(bad({ ...host, replay: { ...host.replay, umask: "22" } })).toBe(false);
  expect(bad({ ...host, span_id: "spn_x" })).toBe(false);
});
