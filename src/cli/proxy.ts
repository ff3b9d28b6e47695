/**
 * `substrate proxy`: serve the agent API on the host (spec ADR-005 gateway) —
 * `~/.substrate/sock/agent.sock` (0700 dir, 0600 socket, same-uid peers only), optionally
 * TCP loopback with a bearer token. Forwards to the world agent found by the platform's
 * world backend (Linux: the local agent socket, started when allowed; macOS: the Lima
 * transport). Runs until SIGINT/SIGTERM.
 */
import { defineCommand } from "citty";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import { CliError, ExitCode } from "./_errors.ts";
import { worldFlag } from "./_globals.ts";

const say = (line: string) => process.stderr.write(`substrate proxy: ${line}\n`);

function parseHostPort(v: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(v);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 0 && port < 65536)) throw new CliError(ExitCode.USAGE, `--tcp ${v}: expected HOST:PORT`, "example: --tcp 127.0.0.1:7788");
  return { host: m[1] ?? m[2]!, port };
}

/** The bearer token: from the file, or a new random one written there (0600). */
function loadToken(file: string): string {
  if (existsSync(file)) {
    const t = readFileSync(file, "utf8").trim();
    if (t.length < 16) throw new CliError(ExitCode.USAGE, `token file ${file} holds fewer than 16 characters`, "delete it to get a fresh token");
    return t;
  }
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const t = randomBytes(32).toString("hex");
  writeFileSync(file, `${t}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return t;
}

export default defineCommand({
  meta: { name: "proxy", description: "Serve the /v1 agent API on ~/.substrate/sock/agent.sock (and optionally TCP loopback)" },
  args: {
    socket: { type: "string", description: "Unix socket to serve (default ~/.substrate/sock/agent.sock)", valueHint: "PATH" },
    "agent-socket": { type: "string", description: "World agent socket to forward to (default: the world backend's)", valueHint: "PATH" },
    tcp: { type: "string", description: "Also listen on TCP loopback, bearer token required", valueHint: "127.0.0.1:PORT" },
    "token-file": { type: "string", description: "Bearer token for --tcp (created 0600 if missing; default ~/.substrate/proxy.token)", valueHint: "FILE" },
    audit: { type: "string", description: "Audit log, one JSON line per request (default ~/.substrate/audit.jsonl; 'off' disables)", valueHint: "FILE" },
    rate: { type: "string", description: "Requests per second per agent id (default 200, burst 2x)", valueHint: "N" },
    policy: { type: "boolean", default: true, description: "Gate executes with the policy broker (--no-policy: forward as is)" },
    "agent-tokens": { type: "string", description: "Per-agent bearer tokens binding agent_id and budget (default ~/.substrate/agent-tokens.json when it exists)", valueHint: "FILE" },
    world: { type: "boolean", description: "--no-world is refused: the proxy forwards to a world agent" },
  },
  async run({ args, rawArgs }) {
    const [{ startProxy, defaultProxySocket, ProxyError, isLoopback }, { effectiveConfig, substrateHome }] = await Promise.all([
      import("../proxy/server.ts"),
      import("../config.ts"),
    ]);
    const cfg = effectiveConfig({ env: process.env, worldFlag: worldFlag(args, rawArgs) });
    let agentSocket = args["agent-socket"];
    if (!agentSocket) {
      if (!cfg.world_enabled) throw new CliError(ExitCode.USAGE, "the proxy forwards to a world agent, but the world is disabled", "drop --no-world / SUBSTRATE_WORLD=disabled");
      const { selectBackend } = await import("./_backend.ts");
      const { WorldUnavailable } = await import("../world/backend.ts");
      try {
        const ready = await selectBackend(cfg, process.env).ensureReady({ start: true });
        if (ready.note) say(ready.note);
        agentSocket = ready.socketPath;
      } catch (e) {
        if (e instanceof WorldUnavailable) throw new CliError(ExitCode.UNAVAILABLE, e.message, e.hint);
        throw e;
      }
    }
    const rate = args.rate === undefined ? undefined : Number(args.rate);
    if (rate !== undefined && !(rate > 0)) throw new CliError(ExitCode.USAGE, `--rate ${args.rate}: expected a positive number`);
    const hp = args.tcp ? parseHostPort(args.tcp) : undefined;
    if (hp && !isLoopback(hp.host)) throw new CliError(ExitCode.USAGE, `refusing to listen on ${hp.host}: the TCP listener is loopback only`, "use 127.0.0.1 or ::1");
    const tcp = hp ? { ...hp, token: loadToken(args["token-file"] ?? join(substrateHome(), "proxy.token")) } : undefined;
    // The broker in the hot path (issue 4): hot-reloaded policies, approvals over the API.
    let policy = null;
    if (args.policy !== false) {
      const { PolicyBroker, ApiApprovals, ApprovalStore } = await import("../broker/index.ts");
      policy = { broker: new PolicyBroker({ warn: say }).watch(), approvals: new ApiApprovals(new ApprovalStore(join(substrateHome(), "approvals.json"))) };
    }
    // Issue 14.6 (RELIABILITY): agent tokens bind each agent's id and budget to its token.
    const { AgentTokens, AgentTokensError, defaultAgentTokensPath } = await import("../proxy/agents.ts");
    let agentTokens;
    try {
      agentTokens = AgentTokens.load(args["agent-tokens"] ?? defaultAgentTokensPath(), args["agent-tokens"] !== undefined);
    } catch (e) {
      if (e instanceof AgentTokensError) throw new CliError(ExitCode.USAGE, e.message, "see docs/API.md \"Agent tokens\"");
      throw e;
    }
    if (agentTokens.size) say(`${agentTokens.size} agent token(s)${agentTokens.file.require_token ? " (required)" : ""}`);
    let proxy;
    try {
      proxy = await startProxy({
        agentTokens,
        socketPath: args.socket ?? defaultProxySocket(),
        agentSocket,
        tcp,
        auditPath: args.audit === "off" ? null : args.audit,
        rate: rate ? { ratePerSec: rate } : undefined,
        log: say,
        policy,
      });
    } catch (e) {
      if (e instanceof ProxyError) throw new CliError(e.exitCode, e.message, e.hint);
      throw e;
    }
    say(`serving ${proxy.socketPath}${proxy.tcp ? ` and ${proxy.tcp.host}:${proxy.tcp.port} (bearer token)` : ""} → ${agentSocket}`);
    await new Promise<void>((resolve) => {
      const stop = (sig: string) => {
        say(`${sig}: stopping`);
        policy?.broker.close();
        void proxy.close().then(resolve);
      };
      process.once("SIGINT", () => stop("SIGINT"));
      process.once("SIGTERM", () => stop("SIGTERM"));
    });
  },
});
