/**
 * Issue 16: `substrate mcp` with the SDK's own client, over stdio (the compiled binary, as an
 * MCP config starts it) and over Streamable HTTP (in-process server on loopback): every tool,
 * progress notifications, cancellation killing the command's tree in the world, tool names,
 * DNS-rebinding refusal.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { DEFAULT_POLICY_YAML } from "../../src/broker/default-policy.ts";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { hostArgv, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";
import { TOOL_NAME } from "../../src/mcp/server.ts";

let agent: TestAgent;
let proj: string;
let home: string;
let http: { url: string; proc: ReturnType<typeof Bun.spawn>; stop(): Promise<void> };
const env = () => ({ PATH: process.env.PATH!, HOME: home, SUBSTRATE_WORLD_SOCKET: agent.socket, SUBSTRATE_TRACE: join(home, "trace.jsonl") });
const clients: Client[] = [];

async function stdioClient(): Promise<Client> {
  const [cmd, ...args] = hostArgv();
  const t = new StdioClientTransport({ command: cmd!, args: [...args, "mcp"], cwd: proj, env: env(), stderr: "pipe" });
  const c = new Client({ name: "test", version: "1" });
  await c.connect(t);
  clients.push(c);
  return c;
}
async function httpClient(): Promise<Client> {
  const c = new Client({ name: "test", version: "1" });
  await c.connect(new StreamableHTTPClientTransport(new URL(http.url)));
  clients.push(c);
  return c;
}
const sc = (r: unknown) => (r as { structuredContent: Record<string, any> }).structuredContent;

beforeAll(async () => {
  agent = await startAgent();
  proj = tempProject();
  home = mkdtempSync(join(tmpdir(), "substrate-home-"));
  // the spec's default policy in enforce mode: `sudo *` is denied
  mkdirSync(join(home, ".substrate", "policies"), { recursive: true });
  writeFileSync(join(home, ".substrate", "policies", "default.yaml"), DEFAULT_POLICY_YAML.replace(/^mode: observe.*$/m, "mode: enforce"));
  // `substrate mcp --http 127.0.0.1:PORT` as a user starts it (the compiled binary when built)
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  const proc = Bun.spawn([...hostArgv(), "mcp", "--http", `127.0.0.1:${port}`], { cwd: proj, env: env(), stdout: "ignore", stderr: "pipe" });
  const reader = (proc.stderr as ReadableStream<Uint8Array>).getReader();
  let err = "";
  while (!err.includes("serving")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`substrate mcp --http exited: ${err}`);
    err += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  http = {
    url: `http://127.0.0.1:${port}/mcp`,
    proc,
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
});
afterAll(async () => {
  for (const c of clients) await c.close().catch(() => {});
  await http?.stop();
  await agent.stop();
  rmSync(proj, { recursive: true, force: true });
  rmSync(home, { recursive: true, force: true });
});

for (const [name, make] of [["stdio", stdioClient], ["http", httpClient]] as const) {
  describe(`substrate mcp over ${name}`, () => {
    let c: Client;
    beforeAll(async () => {
      c = await make();
    });

    test("server is `substrate`; every tool name matches ^[A-Za-z0-9_./-]{1,64}$; run_command has an outputSchema", async () => {
      expect(c.getServerVersion()?.name).toBe("substrate");
      expect(c.getServerVersion()?.name).not.toContain("_");
      const tools = (await c.listTools()).tools;
      expect(tools.map((t) => t.name).sort()).toEqual(["kill_process", "list_processes", "read_process_output", "run_command", "start_process", "world_apply", "world_diff", "world_discard", "world_info", "write_stdin"]);
      for (const t of tools) expect(t.name).toMatch(TOOL_NAME);
      expect(tools.find((t) => t.name === "run_command")?.outputSchema?.properties).toHaveProperty("exit_code");
    });

    test("run_command: in the world, stdout/stderr apart, exit code, span; a write outside the project refused", async () => {
      const r = await c.callTool({ name: "run_command", arguments: { command: "echo out; echo err >&2; hostname; echo $0 $1; exit 3" } });
      const s = sc(r);
      expect(s.exit_code).toBe(3);
      expect(s.stdout).toMatch(/^out\nsubstrate-[0-9a-f]{8}\nbash\s*\n$/);
      expect(s.stderr).toBe("err\n");
      expect(s.ran).toBe("world");
      expect(s.span_id).toMatch(/^spn_/);
      expect(r.isError).toBe(true);
      const argv = sc(await c.callTool({ name: "run_command", arguments: { argv: ["printf", "%s|", "a b", "c"], stdin: "" } }));
      expect(argv.stdout).toBe("a b|c|");
      const stdin = sc(await c.callTool({ name: "run_command", arguments: { command: "wc -c", stdin: "12345" } }));
      expect(stdin.stdout.trim()).toBe("5");
      // outside the project: /opt is read-only in the world; the world's /tmp is its own
      const outside = `/opt/mcp-outside-${name}-${process.pid}`;
      const w = sc(await c.callTool({ name: "run_command", arguments: { command: `echo x > ${outside}` } }));
      expect(w.exit_code).not.toBe(0);
      expect(existsSync(outside)).toBe(false);
      const tmpOut = join(tmpdir(), `mcp-outside-${name}-${process.pid}`);
      await c.callTool({ name: "run_command", arguments: { command: `echo x > ${tmpOut}` } });
      expect(existsSync(tmpOut)).toBe(false);
    });

    test("run_command: progress notifications while it runs", async () => {
      const seen: { progress: number; message?: string }[] = [];
      const r = await c.callTool({ name: "run_command", arguments: { command: "for i in 1 2 3; do echo tick $i; sleep 0.4; done" } }, undefined, { onprogress: (p) => seen.push(p), resetTimeoutOnProgress: true });
      expect(sc(r).stdout).toBe("tick 1\ntick 2\ntick 3\n");
      expect(seen.length).toBeGreaterThanOrEqual(2);
      for (let i = 1; i < seen.length; i++) expect(seen[i]!.progress).toBeGreaterThan(seen[i - 1]!.progress);
      expect(seen.some((p) => p.message?.startsWith("tick"))).toBe(true);
    });

    test("run_command: timeout kills the tree; cancellation kills the tree", async () => {
      const marker = `mcp-${name}-${process.pid}`;
      const t = sc(await c.callTool({ name: "run_command", arguments: { command: `sleep 30 & echo started; wait`, timeout_ms: 1500 } }));
      expect(t.timed_out).toBe(true);
      expect(t.signal).toBe("SIGKILL");
      expect(t.stdout).toBe("started\n");
      const ac = new AbortController();
      const call = c.callTool({ name: "run_command", arguments: { command: `echo ${marker} > ${proj}/cancel-${name}; exec -a ${marker} sleep 60` } }, undefined, { signal: ac.signal });
      for (let i = 0; i < 200 && !existsSync(join(proj, `cancel-${name}`)); i++) await Bun.sleep(25);
      await Bun.sleep(200);
      ac.abort();
      await expect(call).rejects.toThrow();
      // the world's process is gone: a new command in the same world no longer sees it
      let left = "x";
      for (let i = 0; i < 100 && left; i++) {
        left = sc(await c.callTool({ name: "run_command", arguments: { command: `pgrep -f '^${marker}' || true` } })).stdout.trim();
        if (left) await Bun.sleep(100);
      }
      expect(left).toBe("");
    });

    test("yield_ms, start_process, read_process_output, write_stdin, list_processes, kill_process", async () => {
      const y = sc(await c.callTool({ name: "run_command", arguments: { command: "echo first; sleep 0.5; echo second", yield_ms: 100 } }));
      expect(y.ran).toBe("running");
      expect(y.process_id).toMatch(/^proc_/);
      const more = sc(await c.callTool({ name: "read_process_output", arguments: { process_id: y.process_id, offset: 0, wait_ms: 3000 } }));
      expect(more.output).toContain("first");
      const s = sc(await c.callTool({ name: "start_process", arguments: { command: "read -p 'name? ' x; echo hello $x; sleep 60", yield_ms: 1000 } }));
      expect(s.status).toBe("running");
      expect(s.output).toContain("name? ");
      const w = sc(await c.callTool({ name: "write_stdin", arguments: { process_id: s.process_id, input: "bob\n", wait_ms: 3000 } }));
      expect(w.output).toContain("hello bob");
      const list = sc(await c.callTool({ name: "list_processes", arguments: {} }));
      expect(list.processes.map((p: { process_id: string }) => p.process_id)).toContain(s.process_id);
      const k = sc(await c.callTool({ name: "kill_process", arguments: { process_id: s.process_id } }));
      expect(k.status).toBe("killed");
      const gone = await c.callTool({ name: "read_process_output", arguments: { process_id: "proc_nope" } });
      expect(gone.isError).toBe(true);
    });

    test("world_info; isolated run → world_diff / world_apply / world_discard", async () => {
      const i = sc(await c.callTool({ name: "world_info", arguments: {} }));
      expect(i.world_enabled).toBe(true);
      expect(i.hostname).toMatch(/^substrate-/);
      expect(i.project_dir).toBe(proj);
      expect(i.writable_paths).toContain(proj);
      const r = sc(await c.callTool({ name: "run_command", arguments: { command: `echo iso > iso-${name}.txt`, isolated: true } }));
      expect(r.exit_code).toBe(0);
      expect(existsSync(join(proj, `iso-${name}.txt`))).toBe(false);
      expect(r.result_span_id).toMatch(/^spn_/);
      const d = sc(await c.callTool({ name: "world_diff", arguments: { span_id: r.result_span_id } }));
      expect(d.writes).toContain(`iso-${name}.txt`);
      await c.callTool({ name: "world_apply", arguments: { span_id: r.result_span_id } });
      expect(existsSync(join(proj, `iso-${name}.txt`))).toBe(true);
      const r2 = sc(await c.callTool({ name: "run_command", arguments: { command: `echo no > drop-${name}.txt`, isolated: true } }));
      await c.callTool({ name: "world_discard", arguments: { span_id: r2.result_span_id } });
      expect((await c.callTool({ name: "world_diff", arguments: { span_id: r2.result_span_id } })).isError).toBe(true);
    });

    test("a command the policy denies is a tool error that says so", async () => {
      const r = await c.callTool({ name: "run_command", arguments: { command: "sudo true" } });
      expect(r.isError).toBe(true);
      expect(JSON.stringify(r.content)).toMatch(/denied by policy default/);
    });
  });
}

test("a command that needs approval is a tool error that says how to approve", async () => {
  const home2 = mkdtempSync(join(tmpdir(), "substrate-home-approve-"));
  mkdirSync(join(home2, ".substrate", "policies"), { recursive: true });
  writeFileSync(join(home2, ".substrate", "policies", "default.yaml"), DEFAULT_POLICY_YAML.replace(/^mode: observe.*$/m, "mode: enforce").replace(/^approval:\n/m, "approval:\n  require_approval: true\n"));
  const [cmd, ...args] = hostArgv();
  const c = new Client({ name: "test", version: "1" });
  await c.connect(new StdioClientTransport({ command: cmd!, args: [...args, "mcp"], cwd: proj, env: { ...env(), HOME: home2 }, stderr: "pipe" }));
  try {
    const r = await c.callTool({ name: "run_command", arguments: { command: `echo needs-approval > ${proj}/approved.txt` } });
    expect(r.isError).toBe(true);
    const t = JSON.stringify(r.content);
    expect(t).toContain("Allow always");
    expect(t).toContain("substrate -c");
    expect(existsSync(join(proj, "approved.txt"))).toBe(false);
  } finally {
    await c.close();
    rmSync(home2, { recursive: true, force: true });
  }
});

test("HTTP: a foreign Host header (DNS rebinding) is refused; a non-loopback --http is a usage error", async () => {
  const r = await fetch(http.url, {
    method: "POST",
    headers: { host: "evil.example:80", "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "x", version: "1" } } }),
  });
  expect(r.status).toBeGreaterThanOrEqual(400);
  const p = Bun.spawnSync([...hostArgv(), "mcp", "--http", "0.0.0.0:1"], { env: env(), stdout: "pipe", stderr: "pipe" });
  expect(p.exitCode).toBe(2);
  expect(p.stderr.toString()).toContain("loopback");
});
