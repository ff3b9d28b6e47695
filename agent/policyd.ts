/**
 * Issue 17: the agent-side policy gate ("the policy applies however a command arrives",
 * including a client on the agent's own socket; docs/ARCHITECTURE.md "Where the policy
 * decision runs"). The decision is the pipeline's own (`agentGate`, src/run/agent-gate.ts):
 * the caller's policy for the request's cwd — deny → 403, approval → 409, `commands.isolated`
 * → isolated — and, when the request brings no world of its own, the policy's world.
 *
 * Why a helper process per caller (`__policyd`, running AS the caller): the policy lives in
 * the caller's home and project (`~/.substrate/…`, `.substrate-profile`), and a root agent
 * reading them would follow a symlink planted there (`~/.substrate/policies/default.yaml →
 * /etc/shadow`) and could echo what it read in an error. As the caller it reads exactly what
 * the caller may read, records nothing as root, and a crash takes only that caller's gate.
 * One per uid, started on first use (~one Bun start), then a JSON line per request over its
 * stdin/stdout; it exits when the agent closes its stdin, or after an idle minute.
 */
import type { Caller } from "../src/contract/world.ts";
import type { AgentGate, HostSpanResult } from "./service.ts";
import { ApiError } from "../src/api/service.ts";
import { phases } from "./timing.ts";

type GateInput = Parameters<AgentGate>[0];
interface Answer {
  id: number;
  ok: boolean;
  /** the same request may reuse this answer for so many ms (a quiet plain run on the cached policy) */
  cache_ms?: number;
  isolated?: boolean;
  world?: Record<string, unknown>;
  error?: { code: "denied" | "approval_required" | "unavailable" | "unsupported" | "internal"; message: string; hint?: string; approval?: unknown };
}

const IDLE_MS = 60_000;
/** the caller's loaded policy per cwd is reused this long (a burst pays one load) */
const POLICY_CACHE_MS = 1000;

/** Server side: `substrate-world-agent __policyd` (already running as the caller). */
export async function policydMain(): Promise<number> {
  const [{ agentGate, startHostSpan }, { loadEffectivePolicySync }] = await Promise.all([import("../src/run/agent-gate.ts"), import("../src/broker/load.ts")]);
  // The CLI fast path's host spans (StreamStart.host_span): gated here, started and completed
  // by the agent's later lines (host_start once the command runs, host_complete at its end).
  type Pending = { gate: import("../src/run/agent-gate.ts").HostGate; req: GateInput; span?: Awaited<ReturnType<typeof startHostSpan>> };
  const hostSpans = new Map<string, Pending>();
  const home = process.env.HOME;
  // The caller's policy per cwd, for a second: a burst of commands pays one load (YAML + zod +
  // compile, milliseconds), and a policy edit still applies to the next second's commands.
  const cache = new Map<string, { at: number; loaded: ReturnType<typeof loadEffectivePolicySync> }>();
  const loadedFor = (cwd: string) => {
    const hit = cache.get(cwd);
    if (hit && Date.now() - hit.at < POLICY_CACHE_MS) return hit.loaded;
    const loaded = loadEffectivePolicySync(cwd, { ...(home ? { home } : {}) });
    if (cache.size > 256) cache.clear();
    cache.set(cwd, { at: Date.now(), loaded });
    return loaded;
  };
  let idle = setTimeout(() => process.exit(0), IDLE_MS);
  let buf = "";
  const out = (a: Answer) => process.stdout.write(`${JSON.stringify(a)}\n`);
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    clearTimeout(idle);
    idle = setTimeout(() => process.exit(0), IDLE_MS);
    buf += chunk.toString();
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      let id = 0;
      const tm = phases("substrate-policyd-timing");
      try {
        const q = JSON.parse(line) as { id: number; req: GateInput } | { id: number; op: "host_start" | "host_complete" | "host_drop"; span_id: string; result?: import("../src/trace/command-span.ts").CommandResult };
        id = q.id;
        if ("op" in q) {
          const p = hostSpans.get(q.span_id);
          if (q.op === "host_start" && p && !p.span) p.span = await startHostSpan(p.req.host!, p.gate, { cwd: p.req.cwd, agentId: p.req.agentId });
          else if (q.op === "host_complete" && p?.span) p.span.complete(q.result!);
          if (q.op !== "host_start") hostSpans.delete(q.span_id);
          out({ id, ok: true });
          continue;
        }
        const r = q.req;
        // A request's own world stays its own (a client on the socket is a host process of
        // this uid already); without one, the policy's world applies.
        let loaded;
        try {
          // the fast path's gate is the host's: a fresh load per command, as the CLI's (~1 ms warm)
          loaded = r.host ? loadEffectivePolicySync(r.cwd, { ...(home ? { home } : {}) }) : loadedFor(r.cwd);
        } catch {
          loaded = undefined; // agentGate loads it again and answers with the error it gets
        }
        tm.mark(r.host ? "loaded_fresh" : "loaded");
        const g = await agentGate(
          { ...(r.argv ? { argv: r.argv } : { cmd: r.cmd }), cwd: r.cwd, isolated: r.isolated, ...(r.world ? { world: r.world } : {}) },
          // record: the helper runs AS the caller, so it records the project's policy selection in
          // the caller's ~/.substrate exactly as the caller's CLI would (issue 14.4, BROKER): without
          // it a direct client's world could write a weaker sub/.substrate-profile before any record exists
          { ...(home ? { home } : {}), ...(loaded ? { loaded } : {}), ...(r.host ? { host: { session_id: r.host.session_id, ...(r.host.parent_span ? { parent_span: r.host.parent_span } : {}) } } : {}) },
        );
        if (r.host && g.host) {
          if (hostSpans.size >= 1024) hostSpans.delete(hostSpans.keys().next().value!); // an agent that never said start/drop
          hostSpans.set(r.host.span_id, { gate: g.host, req: r });
        }
        tm.mark("gated");
        tm.dump();
        // A quiet plain run on the cached policy: the agent may reuse this answer for the same
        // request until that policy would be loaded again (so a policy edit still applies within
        // the second, as before).
        const at = cache.get(r.cwd)?.at;
        const cacheMs = !r.host && g.quiet && at !== undefined && loaded === cache.get(r.cwd)?.loaded ? POLICY_CACHE_MS - (Date.now() - at) : 0;
        out({ id, ok: true, ...(g.request.isolated ? { isolated: true } : {}), ...(r.world ? {} : { world: g.request.world as Record<string, unknown> }), ...(cacheMs > 0 ? { cache_ms: cacheMs } : {}) });
      } catch (e) {
        const err = e instanceof ApiError ? e : new ApiError("internal", (e as Error).message);
        const code = (["denied", "approval_required", "unavailable", "unsupported"] as const).includes(err.code as "denied") ? (err.code as "denied") : "internal";
        out({ id, ok: false, error: { code, message: err.message, ...(err.hint ? { hint: err.hint } : {}), ...(err.extra?.approval ? { approval: err.extra.approval } : {}) } });
      }
    }
  }
  return 0;
}

interface Helper {
  proc: ReturnType<typeof Bun.spawn>;
  pending: Map<number, (a: Answer) => void>;
}

/** Agent side: the AgentGate that asks the caller's helper. */
export function policyGate(selfArgv: string[], log?: (m: string) => void): AgentGate & { close(): void } {
  const helpers = new Map<number, Helper>();
  let next = 1;
  const start = (c: Caller): Helper => {
    const runAs = c.uid !== (process.getuid?.() ?? 0) ? ["setpriv", `--reuid=${c.uid}`, `--regid=${c.gid}`, `--groups=${c.groups.join(",")}`, "--"] : [];
    const proc = Bun.spawn([...runAs, ...selfArgv, "__policyd"], {
      cwd: "/",
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
      env: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", HOME: c.home, USER: c.name, LOGNAME: c.name, BUN_GC_TIMER_DISABLE: "1", ...(process.env.SUBSTRATE_TIMING === "1" ? { SUBSTRATE_TIMING: "1" } : {}) },
    });
    const h: Helper = { proc, pending: new Map() };
    helpers.set(c.uid, h);
    void (async () => {
      let buf = "";
      for await (const chunk of proc.stdout as ReadableStream<Uint8Array>) {
        buf += new TextDecoder().decode(chunk);
        for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
          const a = JSON.parse(buf.slice(0, i)) as Answer;
          buf = buf.slice(i + 1);
          h.pending.get(a.id)?.(a);
          h.pending.delete(a.id);
        }
      }
    })().catch(() => {});
    void (async () => {
      for await (const c2 of proc.stderr as ReadableStream<Uint8Array>) log?.(`policy helper (uid ${c.uid}): ${new TextDecoder().decode(c2).trimEnd()}`);
    })().catch(() => {});
    void proc.exited.then(() => {
      if (helpers.get(c.uid) === h) helpers.delete(c.uid);
      for (const r of h.pending.values()) r({ id: 0, ok: false, error: { code: "unavailable", message: "the policy helper ended before it answered" } });
    });
    return h;
  };
  const ask = (h: Helper, q: Record<string, unknown>): Promise<Answer> => {
    const id = next++;
    return new Promise<Answer>((resolve) => {
      h.pending.set(id, resolve);
      (h.proc.stdin as import("bun").FileSink).write(`${JSON.stringify({ id, ...q })}\n`);
      (h.proc.stdin as import("bun").FileSink).flush();
    });
  };
  // Answers the helper marked reusable (a quiet plain run; never the fast path's, which writes
  // spans): the same request from the same uid skips the helper round trip until they expire.
  const answers = new Map<string, { until: number; answer: Answer }>();
  const gate = (async (i: GateInput) => {
    const key = i.host ? null : JSON.stringify([i.caller.uid, i.cwd, i.projectDir, i.cmd, i.argv ?? null, i.isolated, i.world ?? null]);
    const cached = key ? answers.get(key) : undefined;
    if (cached && cached.until > Date.now()) return resultOf(cached.answer);
    let h = helpers.get(i.caller.uid);
    if (!h || h.proc.exitCode !== null) h = start(i.caller);
    const helper = h;
    const answer = await ask(helper, { req: { ...i, caller: undefined } });
    if (key && answer.ok && answer.cache_ms) {
      if (answers.size >= 512) answers.delete(answers.keys().next().value!);
      answers.set(key, { until: Date.now() + answer.cache_ms, answer });
    }
    if (!answer.ok) {
      const e = answer.error!;
      throw new ApiError(
        e.code,
        e.message,
        e.hint ?? (e.code === "approval_required" ? "run it with `substrate -c` in a terminal: the host asks you there" : undefined),
        e.approval ? { approval: e.approval } : undefined,
      );
    }
    // The fast path's host span: the same helper (the caller) writes it; lines keep their order.
    const spanId = i.host?.span_id;
    const op = (name: string, result?: unknown) => ask(helper, { op: name, span_id: spanId, ...(result ? { result } : {}) });
    const host = spanId
      ? {
          start: () => void op("host_start"),
          complete: async (r: HostSpanResult) => void (await op("host_complete", r)),
          drop: () => void op("host_drop"),
        }
      : undefined;
    return { ...resultOf(answer), ...(host ? { host } : {}) };
  }) as AgentGate & { close(): void };
  const resultOf = (answer: Answer) => ({ ...(answer.isolated ? { isolated: true } : {}), ...(answer.world ? { world: answer.world as GateInput["world"] } : {}) });
  gate.close = () => {
    for (const h of helpers.values()) {
      try {
        (h.proc.stdin as import("bun").FileSink).end();
      } catch {}
    }
  };
  return gate;
}
