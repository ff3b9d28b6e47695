/**
 * Issue 16: `substrate mcp` — an MCP exec server (official SDK, @modelcontextprotocol/sdk).
 * Every command goes through the host pipeline (src/cli/_entry-run.ts → runIntent): the same
 * policy, world and spans as `substrate -c`. Approvals and denials come back as tool errors
 * that say how to proceed. Tool names match ^[A-Za-z0-9_./-]{1,64}$; the server's name (the
 * alias clients prefix tools with) is `substrate`, without `_` (Gemini splits at the first `_`).
 *
 * Tools (conventions of Codex exec_command/write_stdin, DesktopCommander, container-use):
 *   run_command        one command (bash script or argv) → exit_code, stdout, stderr, …;
 *                      progress notifications while it runs; cancellation kills its tree;
 *                      yield_ms: still running then → a process_id to continue with
 *   start_process      a long-running / interactive command (PTY by default)
 *   read_process_output, write_stdin, kill_process, list_processes
 *   world_info         the world a command gets: project, writable paths, network, policy
 *   world_diff / world_apply / world_discard   an isolated run's result
 */
import { PassThrough } from "node:stream";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { versionString } from "../version.ts";
import { runEntry, type EntryOutcome } from "../cli/_entry-run.ts";

const shellQuote = (v: string): string => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(v) ? v : `'${v.replace(/'/g, `'"'"'`)}'`);

export const SERVER_NAME = "substrate";
export const TOOL_NAME = /^[A-Za-z0-9_./-]{1,64}$/;

/** Per stream, what a result carries at most (the rest is counted, `truncated: true`). */
const MAX_OUTPUT = 1 << 20;
const DEFAULT_TIMEOUT_MS = 120_000;
const MAX_TIMEOUT_MS = 600_000;

export interface McpOptions {
  /** the default cwd of commands (the project) */
  cwd: string;
  env: Record<string, string | undefined>;
  /** agent id on spans (default `mcp`) */
  agentId?: string;
  worldFlag?: boolean;
}

type Status = "running" | "exited" | "killed";

/** A command the server started; output kept in a bounded buffer (oldest bytes dropped). */
class Proc {
  readonly started_at = new Date().toISOString();
  status: Status = "running";
  exit_code: number | null = null;
  timed_out = false;
  stdout: Buffer[] = [];
  stderr: Buffer[] = [];
  sizes = { stdout: 0, stderr: 0 };
  truncated = false;
  /** combined output (interleaved as it came) and how many bytes were dropped from its head */
  combined: Buffer = Buffer.alloc(0);
  dropped = 0;
  readPos = 0;
  outcome?: EntryOutcome;
  readonly done: Promise<void>;
  private waiters: (() => void)[] = [];
  constructor(
    readonly id: string,
    readonly command: string,
    readonly abort: AbortController,
    readonly stdin: PassThrough | undefined,
    run: (p: Proc) => Promise<EntryOutcome>,
  ) {
    this.done = run(this).then(
      (o) => {
        this.outcome = o;
        this.exit_code = this.abort.signal.aborted ? null : o.exit;
        if (this.status === "running") this.status = "exited";
      },
      (e: Error) => {
        this.append("stderr", Buffer.from(`substrate: ${e.message}\n`));
        this.exit_code = (e as { exitCode?: number }).exitCode ?? 1;
        if (this.status === "running") this.status = "exited";
      },
    ).finally(() => this.wake());
  }
  append(kind: "stdout" | "stderr", b: Uint8Array): void {
    const buf = Buffer.from(b);
    this.sizes[kind] += buf.length;
    const kept = this[kind].reduce((n, x) => n + x.length, 0);
    if (kept < MAX_OUTPUT) this[kind].push(buf.subarray(0, MAX_OUTPUT - kept));
    if (kept + buf.length > MAX_OUTPUT) this.truncated = true;
    this.combined = Buffer.concat([this.combined, buf]);
    if (this.combined.length > MAX_OUTPUT) {
      const cut = this.combined.length - MAX_OUTPUT;
      this.combined = this.combined.subarray(cut);
      this.dropped += cut;
    }
    this.wake();
  }
  get total(): number {
    return this.dropped + this.combined.length;
  }
  /** bytes [from, total) that are still kept */
  slice(from: number, length?: number): { text: string; next: number } {
    const start = Math.max(from, this.dropped);
    const end = length === undefined ? this.total : Math.min(this.total, start + length);
    return { text: this.combined.subarray(start - this.dropped, end - this.dropped).toString("utf8"), next: end };
  }
  wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
  /** until new output or exit, at most ms */
  async waitForChange(ms: number, since = this.total): Promise<void> {
    const end = Date.now() + ms;
    while (this.status === "running" && this.total === since && Date.now() < end) {
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, end - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }
  /** until exit, at most ms; true if it exited */
  async waitExit(ms: number): Promise<boolean> {
    if (this.status !== "running") return true;
    let t: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([this.done.then(() => true), new Promise<boolean>((res) => (t = setTimeout(() => res(false), ms)))]);
    if (t) clearTimeout(t);
    return r;
  }
}

const text = (s: string) => ({ type: "text" as const, text: s });
const toolError = (message: string) => ({ isError: true, content: [text(message)] });

export const RunCommandOutput = {
  exit_code: z.number().int().nullable().describe("exit status (128+N for a signal); null while running or when killed"),
  signal: z.string().nullable().describe("the signal Substrate sent (timeout, cancel, kill), else null"),
  stdout: z.string(),
  stderr: z.string(),
  timed_out: z.boolean(),
  truncated: z.boolean().describe("stdout or stderr exceeded 1 MiB; the rest is not included"),
  cwd: z.string().describe("the directory the command ran in"),
  span_id: z.string().nullable().describe("the command's trace span (substrate trace SPAN)"),
  result_span_id: z.string().nullable().describe("isolated runs: the result for world_diff / world_apply / world_discard"),
  ran: z.enum(["world", "host", "denied", "approval_required", "running"]),
  process_id: z.string().optional().describe("present when the command was still running after yield_ms: continue with read_process_output / write_stdin / kill_process"),
  duration_ms: z.number().int(),
};

export function createMcpServer(o: McpOptions): { server: McpServer; close(): Promise<void> } {
  const server = new McpServer(
    { name: SERVER_NAME, version: versionString() },
    { capabilities: { tools: {}, logging: {} }, instructions: "Runs shell commands inside Substrate's isolated world (policy-checked, traced). Use run_command for one-shot commands and start_process for servers, watchers and REPLs." },
  );
  const procs = new Map<string, Proc>();
  let seq = 0;
  const agentId = o.agentId ?? (o.env.SUBSTRATE_AGENT_ID || "mcp");

  const resolveCwd = (cwd?: string): string => {
    if (!cwd) return o.cwd;
    if (!cwd.startsWith("/")) throw new Error(`cwd must be an absolute path, got ${JSON.stringify(cwd)}`);
    return cwd;
  };
  const argvOf = (a: { command?: string | undefined; argv?: string[] | undefined; login?: boolean | undefined }): string[] => {
    if (a.argv && a.argv.length) return a.argv;
    if (a.command === undefined || a.command === "") throw new Error("give command (a bash script) or argv (an exact argv)");
    return ["bash", a.login ? "-lc" : "-c", a.command];
  };

  function start(a: { argv: string[]; cwd: string; env?: Record<string, string> | undefined; stdin?: string | undefined; tty?: boolean; isolated?: boolean | undefined; live?: boolean }): Proc {
    const abort = new AbortController();
    const id = `proc_${++seq}`;
    const live = a.live === true;
    const stdinStream = live ? new PassThrough() : undefined;
    const p = new Proc(id, a.argv.join(" "), abort, stdinStream, (self) => {
      const env = { ...o.env, ...a.env, SUBSTRATE_AGENT_ID: agentId };
      if (live) {
        // Interactive: a PTY in the world fed from write_stdin; output captured as it comes.
        const sink = (kind: "stdout" | "stderr") => {
          const w = new PassThrough();
          w.on("data", (b: Buffer) => self.append(kind, b));
          return w as unknown as NodeJS.WriteStream;
        };
        return runEntry({
          argv: a.argv, cwd: a.cwd, env, io: a.tty === false ? "pipes" : "pty", component: "api", asker: "api", agentId,
          ...(o.worldFlag !== undefined ? { worldFlag: o.worldFlag } : {}),
          stdio: { stdin: stdinStream as unknown as NodeJS.ReadStream, stdout: sink("stdout"), stderr: sink("stderr") },
          signal: abort.signal,
          say: (l) => self.append("stderr", Buffer.from(`substrate: ${l}\n`)),
        });
      }
      return runEntry({
        argv: a.argv, cwd: a.cwd, env, io: "buffered", component: "api", asker: "api", agentId,
        ...(o.worldFlag !== undefined ? { worldFlag: o.worldFlag } : {}),
        ...(a.isolated ? { isolated: true } : {}),
        stdin: Buffer.from(a.stdin ?? ""),
        onOutput: (k, b) => self.append(k, b),
        signal: abort.signal,
        say: (l) => self.append("stderr", Buffer.from(`substrate: ${l}\n`)),
      });
    });
    procs.set(id, p);
    return p;
  }

  function result(p: Proc, cwd: string, t0: number, yielded: boolean) {
    const o2 = p.outcome;
    const ran = yielded ? "running" : (o2?.ran ?? "world");
    const signal = p.status === "killed" || p.timed_out ? "SIGKILL" : null;
    const structured = {
      exit_code: yielded ? null : p.exit_code,
      signal,
      stdout: Buffer.concat(p.stdout).toString("utf8"),
      stderr: Buffer.concat(p.stderr).toString("utf8"),
      timed_out: p.timed_out,
      truncated: p.truncated,
      cwd,
      span_id: o2?.span_id ?? null,
      result_span_id: o2?.fs_diff ? (o2.agent_span_id ?? null) : null,
      ran,
      ...(yielded ? { process_id: p.id } : {}),
      duration_ms: Math.round(performance.now() - t0),
    } as const;
    return structured;
  }

  server.registerTool(
    "run_command",
    {
      title: "Run a command in the world",
      description:
        "Run a bash script (command) or an exact argv in Substrate's isolated world, with the policy deciding first. Returns exit_code, stdout, stderr (separately). timeout_ms (default 120000, max 600000) kills the command's whole process tree. yield_ms: if it is still running after that long, return a process_id instead of waiting (continue with read_process_output / write_stdin / kill_process). isolated: run in a throw-away overlay; review with world_diff, land with world_apply.",
      inputSchema: {
        command: z.string().optional().describe("bash script, run as `bash -c COMMAND`"),
        argv: z.array(z.string()).min(1).optional().describe("exact argv, no shell (instead of command)"),
        cwd: z.string().optional().describe("absolute host path (default: the project)"),
        env: z.record(z.string(), z.string()).optional(),
        stdin: z.string().optional().describe("bytes for the command's stdin (default: empty)"),
        timeout_ms: z.number().int().positive().max(MAX_TIMEOUT_MS).optional(),
        yield_ms: z.number().int().nonnegative().optional(),
        login: z.boolean().optional().describe("run as a login shell (bash -lc)"),
        isolated: z.boolean().optional(),
      },
      outputSchema: RunCommandOutput,
      annotations: { readOnlyHint: false, destructiveHint: true, openWorldHint: true },
    },
    async (a, extra) => {
      const t0 = performance.now();
      let argv: string[];
      let cwd: string;
      try {
        argv = argvOf(a);
        cwd = resolveCwd(a.cwd);
      } catch (e) {
        return toolError((e as Error).message);
      }
      const p = start({ argv, cwd, env: a.env, stdin: a.stdin, isolated: a.isolated });
      const timeout = setTimeout(() => {
        p.timed_out = true;
        p.abort.abort();
      }, a.timeout_ms ?? DEFAULT_TIMEOUT_MS);
      const onCancel = () => {
        p.status = "killed";
        p.abort.abort(); // notifications/cancelled: the tree dies in the world
      };
      extra.signal.addEventListener("abort", onCancel, { once: true });
      // progress while it runs (bytes seen so far; the message is the latest output line)
      const token = extra._meta?.progressToken;
      let sent = -1;
      const tick = token === undefined ? undefined : setInterval(() => {
        if (p.total === sent) return;
        sent = p.total;
        const tail = p.slice(Math.max(0, p.total - 200)).text.trimEnd().split("\n").pop() ?? "";
        void extra.sendNotification({ method: "notifications/progress", params: { progressToken: token, progress: p.total, message: tail } }).catch(() => {});
      }, 250);
      try {
        const exited = a.yield_ms !== undefined ? await p.waitExit(a.yield_ms) : (await p.done, true);
        if (!exited) {
          clearTimeout(timeout); // a yielded process lives until killed (or exits)
          const r = result(p, cwd, t0, true);
          return { content: [text(`still running as ${p.id}; output so far:\n${p.slice(0).text}`)], structuredContent: r };
        }
        procs.delete(p.id);
        const out = p.outcome;
        if (out && (out.ran === "denied" || out.ran === "approval_required")) {
          const cmdText = a.command ?? (a.argv ?? []).join(" ");
          const how = out.ran === "approval_required"
            ? `\nTo approve it, a person runs it once at a terminal — substrate -c ${shellQuote(cmdText)} — and answers [3] Allow always (or adds it to approval.auto_approve in the policy: substrate policy show); then call run_command again.${out.approval ? ` (approval ${out.approval.approval_id})` : ""}`
            : "\nThe policy denies it: change the command, or the policy (`substrate policy show`).";
          return toolError(`${out.message ?? `${out.ran} by policy ${out.policy_id}`}${out.hint ? ` (${out.hint})` : ""}${how}`);
        }
        const r = result(p, cwd, t0, false);
        const body = [r.stdout, r.stderr ? `[stderr]\n${r.stderr}` : "", r.timed_out ? `Command timed out after ${a.timeout_ms ?? DEFAULT_TIMEOUT_MS} ms (killed)` : p.status === "killed" ? "Command cancelled (killed)" : `Command exited with code ${r.exit_code}`].filter(Boolean).join("\n");
        return { content: [text(body)], structuredContent: r, isError: r.timed_out || r.exit_code !== 0 };
      } finally {
        if (tick) clearInterval(tick);
        extra.signal.removeEventListener("abort", onCancel);
        if (p.status !== "running") clearTimeout(timeout);
      }
    },
  );

  const procState = (p: Proc) => ({ process_id: p.id, status: p.status, exit_code: p.exit_code });

  server.registerTool(
    "start_process",
    {
      title: "Start a long-running or interactive command",
      description: "Start a command (server, watcher, REPL) in the world and return after yield_ms (default 1000) with its output so far. tty (default true): on a PTY (stdout and stderr together). Continue with read_process_output, write_stdin, kill_process.",
      inputSchema: {
        command: z.string().optional(),
        argv: z.array(z.string()).min(1).optional(),
        cwd: z.string().optional(),
        env: z.record(z.string(), z.string()).optional(),
        tty: z.boolean().optional(),
        yield_ms: z.number().int().nonnegative().optional(),
      },
      outputSchema: { process_id: z.string(), status: z.enum(["running", "exited", "killed"]), exit_code: z.number().int().nullable(), output: z.string(), next_offset: z.number().int() },
      annotations: { readOnlyHint: false, destructiveHint: true, openWorldHint: true },
    },
    async (a) => {
      let argv: string[];
      let cwd: string;
      try {
        argv = argvOf(a);
        cwd = resolveCwd(a.cwd);
      } catch (e) {
        return toolError((e as Error).message);
      }
      const p = start({ argv, cwd, env: a.env, live: true, tty: a.tty !== false });
      await p.waitExit(a.yield_ms ?? 1000);
      const s = p.slice(0);
      p.readPos = s.next;
      return { content: [text(`${p.id} ${p.status}${p.exit_code !== null ? ` (exit ${p.exit_code})` : ""}\n${s.text}`)], structuredContent: { ...procState(p), output: s.text, next_offset: s.next } };
    },
  );

  const ProcOutput = { process_id: z.string(), status: z.enum(["running", "exited", "killed"]), exit_code: z.number().int().nullable(), output: z.string(), next_offset: z.number().int(), total_bytes: z.number().int() };
  const getProc = (id: string): Proc => {
    const p = procs.get(id);
    if (!p) throw new Error(`no process ${id} (see list_processes)`);
    return p;
  };
  const readOut = (p: Proc, offset: number | undefined, length: number | undefined) => {
    const from = offset === undefined ? p.readPos : offset < 0 ? Math.max(0, p.total + offset) : offset;
    const s = p.slice(from, length);
    p.readPos = s.next;
    return { content: [text(s.text)], structuredContent: { ...procState(p), output: s.text, next_offset: s.next, total_bytes: p.total } };
  };

  server.registerTool(
    "read_process_output",
    {
      title: "Read a process's output",
      description: "Output of a started (or yielded) process: from offset (default: where the last read stopped; negative: the last N bytes), at most length bytes; wait_ms waits for new output first.",
      inputSchema: { process_id: z.string(), offset: z.number().int().optional(), length: z.number().int().positive().optional(), wait_ms: z.number().int().nonnegative().max(MAX_TIMEOUT_MS).optional() },
      outputSchema: ProcOutput,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async (a) => {
      try {
        const p = getProc(a.process_id);
        if (a.wait_ms) await p.waitForChange(a.wait_ms, a.offset === undefined ? p.readPos : p.total);
        return readOut(p, a.offset, a.length);
      } catch (e) {
        return toolError((e as Error).message);
      }
    },
  );

  server.registerTool(
    "write_stdin",
    {
      title: "Write to a process's stdin",
      description: "Send input to a started process (control characters allowed: \\u0003 is Ctrl-C on a PTY); waits wait_ms (default 500) and returns the new output.",
      inputSchema: { process_id: z.string(), input: z.string(), wait_ms: z.number().int().nonnegative().max(MAX_TIMEOUT_MS).optional() },
      outputSchema: ProcOutput,
      annotations: { readOnlyHint: false, destructiveHint: true, openWorldHint: true },
    },
    async (a) => {
      try {
        const p = getProc(a.process_id);
        if (!p.stdin || p.status !== "running") throw new Error(`${p.id} takes no input (${p.status}${p.stdin ? "" : "; start it with start_process"})`);
        const since = p.total;
        p.stdin.write(a.input);
        await p.waitForChange(a.wait_ms ?? 500, since);
        await Bun.sleep(50); // let the rest of the answer land
        return readOut(p, undefined, undefined);
      } catch (e) {
        return toolError((e as Error).message);
      }
    },
  );

  server.registerTool(
    "kill_process",
    {
      title: "Kill a process",
      description: "Kill a started or yielded process and its whole process tree in the world.",
      inputSchema: { process_id: z.string() },
      outputSchema: { process_id: z.string(), status: z.enum(["running", "exited", "killed"]), exit_code: z.number().int().nullable() },
      annotations: { readOnlyHint: false, destructiveHint: true, openWorldHint: false },
    },
    async (a) => {
      try {
        const p = getProc(a.process_id);
        if (p.status === "running") {
          p.status = "killed";
          p.abort.abort();
          p.stdin?.end();
          await p.waitExit(10_000);
        }
        return { content: [text(`${p.id} ${p.status}`)], structuredContent: procState(p) };
      } catch (e) {
        return toolError((e as Error).message);
      }
    },
  );

  server.registerTool(
    "list_processes",
    {
      title: "List processes",
      description: "Processes started with start_process or yielded by run_command.",
      inputSchema: {},
      outputSchema: { processes: z.array(z.object({ process_id: z.string(), command: z.string(), status: z.enum(["running", "exited", "killed"]), started_at: z.string(), exit_code: z.number().int().nullable() })) },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async () => {
      const list = [...procs.values()].map((p) => ({ process_id: p.id, command: p.command, status: p.status, started_at: p.started_at, exit_code: p.exit_code }));
      return { content: [text(list.map((p) => `${p.process_id} ${p.status} ${p.command}`).join("\n") || "no processes")], structuredContent: { processes: list } };
    },
  );

  server.registerTool(
    "world_info",
    {
      title: "The world commands run in",
      description: "Where commands run: world id and hostname, the project (read-write), what else is writable, the network policy, the policy in force.",
      inputSchema: {},
      outputSchema: {
        world_enabled: z.boolean(),
        world_id: z.string().nullable(),
        hostname: z.string().nullable(),
        project_dir: z.string(),
        writable_paths: z.array(z.string()),
        network: z.object({ isolated: z.boolean(), allowed_domains: z.array(z.string()) }),
        policy_id: z.string().nullable(),
        shell: z.string(),
      },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async () => {
      const { worldInfo } = await import("./world-info.ts");
      try {
        const info = await worldInfo({ cwd: o.cwd, env: { ...o.env, SUBSTRATE_AGENT_ID: agentId }, ...(o.worldFlag !== undefined ? { worldFlag: o.worldFlag } : {}) });
        return { content: [text(JSON.stringify(info, null, 2))], structuredContent: info as unknown as Record<string, unknown> };
      } catch (e) {
        return toolError((e as Error).message);
      }
    },
  );

  const fsTool = (name: "world_diff" | "world_apply" | "world_discard", description: string) =>
    server.registerTool(
      name,
      {
        title: name.replace("_", " "),
        description,
        inputSchema: { span_id: z.string().describe("result_span_id of an isolated run_command"), ...(name === "world_apply" ? { paths: z.array(z.string()).optional().describe("only these diff paths (a dir ending in / selects its subtree)") } : {}) },
        annotations: { readOnlyHint: name === "world_diff", destructiveHint: name !== "world_diff", openWorldHint: false },
      },
      async (a: { span_id: string; paths?: string[] }) => {
        try {
          // the agent of THIS server's config (its env, not the process's: tests serve in-process)
          const [{ effectiveConfig }, { hostBackend }] = await Promise.all([import("../config.ts"), import("../world/select.ts")]);
          const cfg = effectiveConfig({ env: o.env as NodeJS.ProcessEnv, worldFlag: o.worldFlag });
          const client = (await hostBackend(cfg, o.env as NodeJS.ProcessEnv, o.cwd).ensureReady({ start: true })).client;
          if (name === "world_diff") {
            const d = await client.fsDiff(a.span_id);
            return { content: [text([...d.writes.map((p) => `+ ${p}`), ...d.mods.map((p) => `~ ${p}`), ...d.deletes.map((p) => `- ${p}`)].join("\n") || "no changes")], structuredContent: d as unknown as Record<string, unknown> };
          }
          if (name === "world_apply") {
            const r = await client.applyFsDiff(a.span_id, a.paths?.length ? a.paths : undefined);
            return { content: [text(`applied ${r.applied.length} path(s)${r.skipped.length ? `, skipped ${r.skipped.length}` : ""}`)], structuredContent: r as unknown as Record<string, unknown> };
          }
          await client.discardFsDiff(a.span_id);
          return { content: [text(`discarded ${a.span_id}`)] };
        } catch (e) {
          return toolError((e as Error).message + ((e as { hint?: string }).hint ? ` (${(e as { hint?: string }).hint})` : ""));
        }
      },
    );
  fsTool("world_diff", "The changes an isolated run made (+ written, ~ modified, - deleted), kept until applied or discarded.");
  fsTool("world_apply", "Land an isolated run's changes on the project (all, or the given paths).");
  fsTool("world_discard", "Drop an isolated run's changes.");

  return {
    server,
    async close() {
      for (const p of procs.values()) if (p.status === "running") p.abort.abort();
      await server.close();
    },
  };
}
