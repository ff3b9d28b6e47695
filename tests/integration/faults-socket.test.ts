/**
 * Issue 18 faults: the agent's socket path in every state it can be found in — a stale socket
 * file (a crashed agent's), a socket another process serves, a file that is not a socket, and
 * a second agent started on the path of a running one. Real processes: the agent binary.
 * Nothing that belongs to someone else is removed or disturbed; every refusal is one clear line
 * and the taxonomy's exit code (3: in use, 2: not a socket).
 */
import { socketAnswers } from "../../src/sys/unix-socket.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { approveSocketFor } from "../../src/api/approver.ts";
import { agentArgv, pidsMentioning, startAgent, tempProject } from "../helpers/agent.ts";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync("/tmp/substrate-faults-sock-");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const answers = socketAnswers;

/** Run an agent on `socket` to its exit (it must not stay up): code and stderr. */
async function agentOnce(socket: string, stateDir: string): Promise<{ code: number; stderr: string }> {
  const p = Bun.spawn([...agentArgv(), "--listen", socket, "--state-dir", stateDir], { stdout: "ignore", stderr: "pipe", env: { ...process.env, SUBSTRATE_OVERLAY_DIR: join(dir, "overlay") } });
  const t = setTimeout(() => p.kill("SIGKILL"), 30_000);
  const code = await p.exited;
  clearTimeout(t);
  return { code, stderr: await new Response(p.stderr as ReadableStream).text() };
}

describe("the agent's socket path", () => {
  test("a stale socket file (nobody listens) is replaced and served", async () => {
    const sock = join(dir, "stale.sock");
    Bun.spawnSync(["python3", "-c", `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(sock)})`]);
    expect(statSync(sock).isSocket()).toBe(true);
    expect(await answers(sock)).toBe(false);
    const agent = await startAgent({ socket: sock });
    try {
      expect((await agent.client.capabilities()).api_version).toBe("v1");
      expect(await answers(approveSocketFor(sock))).toBe(true);
    } finally {
      await agent.stop();
    }
  });

  test("a socket another process serves: exit 3, one line, the other process keeps its socket", async () => {
    const sock = join(dir, "taken.sock");
    let served = 0;
    const other = createServer((c) => {
      served++;
      c.end();
    });
    await new Promise<void>((r) => other.listen(sock, () => r()));
    try {
      const ino = statSync(sock).ino;
      const r = await agentOnce(sock, join(dir, "state-taken"));
      expect(r.code).toBe(3);
      expect(r.stderr.trim().split("\n")).toEqual([`substrate-world-agent: another agent is already serving ${sock}`]);
      expect(statSync(sock).ino).toBe(ino);
      const before = served;
      expect(await answers(sock)).toBe(true);
      await Bun.sleep(50);
      expect(served).toBeGreaterThan(before);
    } finally {
      other.close();
    }
  });

  test("a file that is not a socket: exit 2, the file is left as it was", async () => {
    const sock = join(dir, "file.sock");
    writeFileSync(sock, "precious\n");
    const r = await agentOnce(sock, join(dir, "state-file"));
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n").length).toBe(1);
    expect(r.stderr).toContain("is not a socket; refusing to replace it");
    expect(readFileSync(sock, "utf8")).toBe("precious\n");
  });

  test("a second agent on a running agent's path: exit 3, and the first agent, its worlds and its approver socket are untouched", async () => {
    const first = await startAgent();
    const proj = tempProject();
    try {
      const r1 = await first.client.execute({ cmd: "echo one", cwd: proj, agent_id: "first" });
      const worldPids = pidsMentioning(r1.world_id);
      expect(worldPids.length).toBeGreaterThan(0);
      const ino = statSync(first.socket).ino;
      // same socket AND same state dir: the worst case (it must sweep nothing of the first's)
      const second = await agentOnce(first.socket, first.stateDir);
      expect(second.code).toBe(3);
      expect(second.stderr.trim().split("\n")).toEqual([`substrate-world-agent: another agent is already serving ${first.socket}`]);
      expect(statSync(first.socket).ino).toBe(ino);
      expect(await answers(approveSocketFor(first.socket))).toBe(true);
      // the first agent's world survived (same world, same processes)
      const r2 = await first.client.execute({ cmd: "echo two", cwd: proj, agent_id: "first" });
      expect(r2.world_id).toBe(r1.world_id);
      expect(Buffer.from(r2.stdout_b64, "base64").toString()).toBe("two\n");
      expect(worldPids.every((p) => existsSync(`/proc/${p}`))).toBe(true);
    } finally {
      await first.stop();
      rmSync(proj, { recursive: true, force: true });
    }
  });
});
