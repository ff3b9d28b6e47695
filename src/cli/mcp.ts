/**
 * `substrate mcp [--http 127.0.0.1:PORT] [--cwd DIR]` — the MCP exec server (src/mcp/server.ts).
 * Default transport: stdio (what `mcpServers.substrate.command` configs start). `--http`:
 * Streamable HTTP on loopback only, at `/mcp`, with DNS-rebinding protection (Host and Origin
 * must name that loopback address), one MCP session per client.
 */
import { defineCommand } from "citty";
import { CliError, ExitCode } from "./_errors.ts";

const say = (l: string) => process.stderr.write(`substrate mcp: ${l}\n`);

/** `127.0.0.1:PORT` / `localhost:PORT` / `[::1]:PORT` / `PORT` → host, port; loopback only. */
export function parseListen(v: string): { host: string; port: number } {
  const m = /^(?:(127(?:\.\d{1,3}){3}|localhost|\[::1\]):)?(\d{1,5})$/.exec(v.trim());
  if (!m) throw new CliError(ExitCode.USAGE, `--http takes a loopback address (127.0.0.1:PORT, localhost:PORT, [::1]:PORT), got ${v}`, "the MCP server never listens beyond this machine");
  const port = Number(m[2]);
  if (port > 65535) throw new CliError(ExitCode.USAGE, `port ${port} out of range`);
  return { host: (m[1] ?? "127.0.0.1").replace(/^\[|\]$/g, ""), port };
}

export interface HttpHandle {
  url: string;
  port: number;
  stop(): Promise<void>;
}

/** Serve the MCP server over Streamable HTTP on loopback (tests start it in-process too). */
export async function serveHttp(o: { host: string; port: number; cwd: string; env: Record<string, string | undefined>; worldFlag?: boolean }): Promise<HttpHandle> {
  const [{ WebStandardStreamableHTTPServerTransport }, { createMcpServer }, { isInitializeRequest }] = await Promise.all([
    import("@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js"),
    import("../mcp/server.ts"),
    import("@modelcontextprotocol/sdk/types.js"),
  ]);
  type Session = { transport: InstanceType<typeof WebStandardStreamableHTTPServerTransport>; close(): Promise<void> };
  const sessions = new Map<string, Session>();
  let port = o.port;
  const hostsFor = () => {
    const h = o.host.includes(":") ? `[${o.host}]` : o.host;
    const names = [h, ...(o.host === "127.0.0.1" ? ["localhost"] : o.host === "localhost" ? ["127.0.0.1"] : [])];
    return { hosts: names.map((n) => `${n}:${port}`), origins: names.map((n) => `http://${n}:${port}`) };
  };
  const server = Bun.serve({
    hostname: o.host,
    port: o.port,
    idleTimeout: 0, // SSE streams of long commands stay open
    async fetch(req) {
      const url = new URL(req.url);
      if (url.pathname !== "/mcp") return new Response("not found: the MCP endpoint is /mcp\n", { status: 404 });
      const sid = req.headers.get("mcp-session-id");
      let s = sid ? sessions.get(sid) : undefined;
      if (!s) {
        if (sid) return Response.json({ jsonrpc: "2.0", error: { code: -32001, message: "Session not found" }, id: null }, { status: 404 });
        // a new session starts with initialize (POST); anything else is refused below by the transport
        let body: unknown;
        if (req.method === "POST") {
          try {
            body = await req.clone().json();
          } catch {
            body = undefined;
          }
        }
        const init = Array.isArray(body) ? body.some((m) => isInitializeRequest(m)) : isInitializeRequest(body);
        const { hosts, origins } = hostsFor();
        if (!init) {
          // still let the transport answer (DNS-rebinding checks, 400 without a session) on a throw-away instance
          const t = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: () => crypto.randomUUID(), enableDnsRebindingProtection: true, allowedHosts: hosts, allowedOrigins: origins });
          const m = createMcpServer({ cwd: o.cwd, env: o.env, ...(o.worldFlag !== undefined ? { worldFlag: o.worldFlag } : {}) });
          await m.server.connect(t);
          const r = await t.handleRequest(req, body !== undefined ? { parsedBody: body } : undefined);
          await m.close();
          return r;
        }
        const m = createMcpServer({ cwd: o.cwd, env: o.env, ...(o.worldFlag !== undefined ? { worldFlag: o.worldFlag } : {}) });
        const transport: Session["transport"] = new WebStandardStreamableHTTPServerTransport({
          sessionIdGenerator: () => crypto.randomUUID(),
          enableDnsRebindingProtection: true,
          allowedHosts: hosts,
          allowedOrigins: origins,
          onsessioninitialized: (id: string) => {
            sessions.set(id, { transport, close: m.close });
          },
          onsessionclosed: (id: string) => {
            const x = sessions.get(id);
            sessions.delete(id);
            void x?.close();
          },
        });
        await m.server.connect(transport);
        return transport.handleRequest(req, { parsedBody: body });
      }
      return s.transport.handleRequest(req);
    },
  });
  port = server.port ?? o.port;
  return {
    url: `http://${o.host.includes(":") ? `[${o.host}]` : o.host}:${port}/mcp`,
    port,
    async stop() {
      for (const s of sessions.values()) await s.close().catch(() => {});
      sessions.clear();
      await server.stop(true);
    },
  };
}

export default defineCommand({
  meta: { name: "mcp", description: "MCP exec server: run_command, start_process, … in the world (stdio, or --http 127.0.0.1:PORT)" },
  args: {
    http: { type: "string", description: "Serve Streamable HTTP on this loopback address (127.0.0.1:PORT) instead of stdio", valueHint: "ADDR" },
    cwd: { type: "string", description: "Default cwd of commands (default: the current directory)", valueHint: "DIR" },
  },
  async run({ args }) {
    const cwd = (args.cwd as string | undefined) ?? process.cwd();
    if (!cwd.startsWith("/")) throw new CliError(ExitCode.USAGE, "--cwd must be an absolute path");
    const { getGlobals } = await import("./_globals.ts");
    const worldFlag = getGlobals().world;
    const env = { ...process.env };
    if (args.http !== undefined) {
      const { host, port } = parseListen(String(args.http));
      let h: HttpHandle;
      try {
        h = await serveHttp({ host, port, cwd, env, ...(worldFlag !== undefined ? { worldFlag } : {}) });
      } catch (e) {
        throw new CliError(ExitCode.UNAVAILABLE, `cannot listen on ${host}:${port}: ${(e as Error).message}`, "pick another port");
      }
      say(`serving ${h.url} (Streamable HTTP, loopback only)`);
      await new Promise<void>((resolve) => {
        const stop = () => void h.stop().then(resolve);
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
      return;
    }
    const [{ StdioServerTransport }, { createMcpServer }] = await Promise.all([import("@modelcontextprotocol/sdk/server/stdio.js"), import("../mcp/server.ts")]);
    const m = createMcpServer({ cwd, env, ...(worldFlag !== undefined ? { worldFlag } : {}) });
    const transport = new StdioServerTransport();
    await m.server.connect(transport);
    await new Promise<void>((resolve) => {
      transport.onclose = () => resolve();
      process.stdin.once("end", () => resolve());
      process.once("SIGTERM", () => resolve());
    });
    await m.close();
  },
});
