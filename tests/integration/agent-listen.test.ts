/**
 * How the agent listens: malformed requests get 400 + JSON (never a crash, never HTML);
 * systemd socket activation serves the inherited fd 3 and never opens a TCP port; a stale
 * socket is replaced, a live agent's socket never is; the socket is 0660.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { lstatSync, readFileSync, readdirSync, readlinkSync, writeFileSync, rmSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { agentArgv, eventually, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

let agent: TestAgent;
let proj: string;

const raw = (path: string, init: RequestInit) =>
  fetch(`http://localhost${path}`, { ...init, unix: agent.socket } as RequestInit);

beforeAll(async () => {
  agent = await startAgent();
  proj = tempProject();
});
afterAll(async () => {
  await agent.stop();
  rmSync(proj, { recursive: true, force: true });
});

/** TCP sockets in LISTEN state owned by a pid. */
function tcpListenersOf(pid: number): string[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {}
  }
  const out: string[] = [];
  for (const f of ["/proc/net/tcp", "/proc/net/tcp6"])
    for (const l of readFileSync(f, "utf8").split("\n").slice(1)) {
      const c = l.trim().split(/\s+/);
      if (c[3] === "0A" && inodes.has(c[9] ?? "")) out.push(c[1]!);
    }
  return out;
}

describe("malformed requests", () => {
  const cases: [string, RequestInit][] = [
    ["invalid JSON", { method: "POST", body: "{nope" }],
    ["empty body", { method: "POST", body: "" }],
    ["array body", { method: "POST", body: "[]" }],
    ["wrong types", { method: "POST", body: JSON.stringify({ cmd: 5, agent_id: true }) }],
    ["missing agent_id", { method: "POST", body: JSON.stringify({ cmd: "true", cwd: "/tmp" }) }],
    ["empty agent_id", { method: "POST", body: JSON.stringify({ cmd: "true", cwd: "/tmp", agent_id: "  " }) }],
    ["both cmd and argv", { method: "POST", body: JSON.stringify({ cmd: "true", argv: ["true"], agent_id: "a", cwd: "/tmp" }) }],
    ["relative cwd", { method: "POST", body: JSON.stringify({ cmd: "true", agent_id: "a", cwd: "tmp" }) }],
    ["unknown field", { method: "POST", body: JSON.stringify({ cmd: "true", agent_id: "a", cwd: "/tmp", bogus: 1 }) }],
    ["invalid UTF-8", { method: "POST", body: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]) }],
    ["no cwd/project", { method: "POST", body: JSON.stringify({ cmd: "true", agent_id: "a" }) }],
    ["missing project dir", { method: "POST", body: JSON.stringify({ cmd: "true", agent_id: "a", cwd: "/nonexistent/xyz" }) }],
  ];
  for (const [name, init] of cases)
    test(`${name} → 400 JSON error body`, async () => {
      const res = await raw("/v1/execute", { ...init, headers: { "content-type": "application/json" } });
      expect(res.status).toBe(400);
      expect(res.headers.get("content-type")).toContain("application/json");
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe("bad_request");
      expect(body.error.message.length).toBeGreaterThan(3);
    });

  test("missing agent_id says so clearly", async () => {
    const res = await raw("/v1/execute", { method: "POST", body: JSON.stringify({ cmd: "true", cwd: proj }) });
    expect(((await res.json()) as { error: { message: string } }).error.message).toContain("agent_id is required");
  });

  test("unknown route → 404 JSON; oversized body → 413 JSON", async () => {
    const r1 = await raw("/v2/nothing", { method: "GET" });
    expect(r1.status).toBe(404);
    expect(((await r1.json()) as { error: { code: string } }).error.code).toBe("not_found");
    const big = "x".repeat(9 * 1024 * 1024);
    const r2 = await raw("/v1/execute", { method: "POST", body: JSON.stringify({ cmd: big, agent_id: "a", cwd: proj }) });
    expect(r2.status).toBe(413);
    expect(((await r2.json()) as { error: { code: string } }).error.code).toBe("payload_too_large");
  });

  test("agent still serving after all that", async () => {
    const r = await agent.client.execute({ cmd: "echo alive", cwd: proj, agent_id: "t" });
    expect(Buffer.from(r.stdout_b64, "base64").toString()).toBe("alive\n");
  });
});

describe("listening", () => {
  test("bound socket is a 0660 Unix socket and the agent has no TCP listener", () => {
    const st = lstatSync(agent.socket);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o660);
    expect(tcpListenersOf(agent.pid)).toEqual([]);
  });

  test("a second agent refuses a socket a live agent serves (exit 3) and leaves it intact", async () => {
    const p = Bun.spawnSync([...agentArgv(), "--listen", agent.socket, "--state-dir", join(agent.dir, "s2")], { stderr: "pipe" });
    expect(p.exitCode).toBe(3);
    expect(p.stderr.toString()).toContain("another agent is already serving");
    expect((await agent.client.capabilities()).api_version).toBe("v1");
  });

  test("a stale socket file is replaced; a non-socket file is never removed", async () => {
    const dir = mkdtempSync(join(tmpdir(), "substrate-stale-"));
    const stale = join(dir, "stale.sock");
    // A socket file with nobody behind it (a process bound it and exited).
    expect(Bun.spawnSync(["python3", "-c", `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(stale)})`]).exitCode).toBe(0);
    expect(lstatSync(stale).isSocket()).toBe(true);
    const a2 = await startAgent({ socket: stale });
    expect((await new (await import("../../src/api/client.ts")).AgentClient(stale).capabilities()).api_version).toBe("v1");
    await a2.stop();
    const plain = join(dir, "plain");
    writeFileSync(plain, "keep me");
    const p = Bun.spawnSync([...agentArgv(), "--listen", plain, "--state-dir", join(dir, "s")], { stderr: "pipe" });
    expect(p.exitCode).toBe(2);
    expect(readFileSync(plain, "utf8")).toBe("keep me");
    rmSync(dir, { recursive: true, force: true });
  });

  test("socket activation: serves the inherited fd 3, never opens a TCP port", async () => {
    const dir = mkdtempSync(join(tmpdir(), "substrate-sa-"));
    const sock = join(dir, "activated.sock");
    // systemd-socket-activate binds the socket and passes it as fd 3 with LISTEN_FDS/LISTEN_PID.
    const launcher = ["systemd-socket-activate", "-l", sock];
    const proc = Bun.spawn([...launcher, ...agentArgv(), "--state-dir", join(dir, "state")], { stdout: "pipe", stderr: "pipe" });
    const { AgentClient } = await import("../../src/api/client.ts");
    const c = new AgentClient(sock);
    // The first connection is what starts the agent (accept-less activation).
    const caps = await eventually(() => c.capabilities(5_000));
    expect(caps.api_version).toBe("v1");
    const r = await c.execute({ cmd: "echo activated", cwd: dir, agent_id: "sa" });
    expect(Buffer.from(r.stdout_b64, "base64").toString()).toBe("activated\n");
    // The agent exec'd in place of the launcher: same pid. It must have no TCP listener.
    expect(tcpListenersOf(proc.pid)).toEqual([]);
    expect(readFileSync(`/proc/${proc.pid}/environ`, "utf8")).toContain("LISTEN_FDS=1");
    proc.kill("SIGTERM");
    await proc.exited;
    const err = await new Response(proc.stderr as ReadableStream).text();
    expect(err).toContain("(socket_activation)");
    rmSync(dir, { recursive: true, force: true });
  });
});
