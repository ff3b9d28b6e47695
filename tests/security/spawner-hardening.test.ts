/**
 * Issue 14.1 (critical): a command in a session world took over its spawner (PTRACE_SEIZE on
 * PID 2, then code in a spawner thread that still had every capability and no Landlock domain)
 * and reached the host root through /proc/<pid>/root. Each wall is attacked for real here:
 *   - every thread of the spawner carries the same reduced credentials (read from the host:
 *     /proc/<spawner>/task/*\/status), so there is no privileged thread to hijack;
 *   - no command can ptrace, process_vm_readv/writev, read /proc/<spawner>/{mem,environ}, or
 *     signal / re-limit the spawner or the world's init — and the world survives the attempts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { b64, pidsMentioning, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";
import { apiAs, createUser, openSocket, out, userProject, type TestUser } from "./_users.ts";

let agent: TestAgent;
let proj: string;
let alice: TestUser;

beforeAll(async () => {
  agent = await startAgent();
  openSocket(agent.socket);
  proj = tempProject();
  alice = createUser("sbts");
});
afterAll(async () => {
  await agent.stop();
  alice?.remove();
});

/** Host pid of the stage-2 spawner of a world (its cmdline names the world id). */
function spawnerOf(worldId: string): number {
  const pids = pidsMentioning(`__world-serve\0{"id":"${worldId}"`);
  expect(pids.length).toBe(1);
  return pids[0]!;
}

function taskStatus(pid: number): Record<string, string>[] {
  return readdirSync(`/proc/${pid}/task`).map((t) =>
    Object.fromEntries(
      readFileSync(`/proc/${pid}/task/${t}/status`, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()]),
    ),
  );
}

// A Python probe: ptrace attach/seize and process_vm_readv of a pid, each printing its errno.
const PROBE = String.raw`
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
pid = int(sys.argv[1])
def r(name, rc):
    print(name, "ok" if rc >= 0 else os.strerror(ctypes.get_errno()))
r("seize", libc.ptrace(0x4206, pid, 0, 0))
r("attach", libc.ptrace(16, pid, 0, 0))
class iov(ctypes.Structure): _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
buf = ctypes.create_string_buffer(16)
local = iov(ctypes.cast(buf, ctypes.c_void_p), 16); remote = iov(0x400000, 16)
r("vm_readv", libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0))
`;
const attackScript = (pid: number) =>
  [
    `python3 -c '${PROBE.replaceAll("'", "'\\''")}' ${pid}`,
    `cat /proc/${pid}/environ >/dev/null 2>&1 && echo environ-READ || echo environ-denied`,
    `head -c1 /proc/${pid}/mem >/dev/null 2>&1 && echo mem-READ || echo mem-denied`,
    `ls /proc/${pid}/root/ >/dev/null 2>&1 && echo root-READ || echo root-denied`,
    `kill -0 ${pid} 2>/dev/null && echo kill-OK || echo kill-denied`,
    `kill -0 1 2>/dev/null && echo kill1-OK || echo kill1-denied`,
    `kill -0 -1 2>/dev/null && echo killall-OK || echo killall-denied`,
    `prlimit --pid ${pid} --nofile=1:1 2>/dev/null && echo prlimit-OK || echo prlimit-denied`,
  ].join("; ");

const EXPECTED_DENIALS = [
  "seize Operation not permitted",
  "attach Operation not permitted",
  "vm_readv Operation not permitted",
  "environ-denied",
  "mem-denied",
  "root-denied",
  "kill-denied",
  "kill1-denied",
  "killall-denied",
  "prlimit-denied",
];

describe("the spawner of a root caller's world", () => {
  test("every thread has the hardened credentials: same caps as a command, no_new_privs, seccomp", async () => {
    const r = await agent.client.execute({ cmd: "grep -E '^(CapEff|CapPrm|CapBnd)' /proc/self/status", cwd: proj, agent_id: "h" });
    const cmdCaps = Object.fromEntries(b64(r.stdout_b64).trim().split("\n").map((l) => l.split(/:\s+/) as [string, string]));
    const tasks = taskStatus(spawnerOf(r.world_id));
    expect(tasks.length).toBeGreaterThan(1); // Bun's helper threads exist: each is checked
    for (const t of tasks) {
      expect({ tid: t.Pid, CapEff: t.CapEff, CapPrm: t.CapPrm, CapBnd: t.CapBnd, NoNewPrivs: t.NoNewPrivs, Seccomp: t.Seccomp }).toEqual({
        tid: t.Pid,
        CapEff: cmdCaps.CapEff!,
        CapPrm: cmdCaps.CapPrm!,
        CapBnd: cmdCaps.CapBnd!,
        NoNewPrivs: "1",
        Seccomp: "2",
      });
      // No capability that reaches outside: sys_admin (21), sys_ptrace (19), kill (5), setfcap (31), fsetid (4).
      const bnd = BigInt(`0x${t.CapBnd}`);
      for (const bit of [21n, 19n, 5n, 31n, 4n, 27n]) expect((bnd >> bit) & 1n).toBe(0n);
    }
  });

  test("a command cannot ptrace, read the memory of, signal or re-limit the spawner or PID 1", async () => {
    const first = await agent.client.execute({ cmd: "echo $$", cwd: proj, agent_id: "h" });
    // The spawner is PID 2 in the world (PID 1 is the world's init).
    const r = await agent.client.execute({ cmd: attackScript(2), cwd: proj, agent_id: "h" });
    expect(b64(r.stdout_b64).trim().split("\n")).toEqual(EXPECTED_DENIALS);
    // The world survived every attempt.
    const after = await agent.client.execute({ cmd: "true", cwd: proj, agent_id: "h" });
    expect(after.world_id).toBe(first.world_id);
    expect(after.exit).toBe(0);
  });

  test("ptrace of one's own child is refused too (no debugger unless a policy opts in)", async () => {
    const r = await agent.client.execute({ cmd: `sleep 5 & p=$!; python3 -c '${PROBE.replaceAll("'", "'\\''")}' $p; kill $p`, cwd: proj, agent_id: "h" });
    expect(b64(r.stdout_b64)).toContain("seize Operation not permitted");
  });
});

describe("the policy opt-in for debuggers (world.allow_ptrace)", () => {
  test("a command may trace its own child, but the spawner stays out of reach (non-dumpable, no CAP_SYS_PTRACE)", async () => {
    const world = { allow_ptrace: true };
    const own = await agent.client.execute({ cmd: `sleep 5 & p=$!; python3 -c '${PROBE.replaceAll("'", "'\\''")}' $p; kill $p`, cwd: proj, agent_id: "dbg", world });
    expect(b64(own.stdout_b64)).toContain("seize ok");
    const r = await agent.client.execute({ cmd: attackScript(2), cwd: proj, agent_id: "dbg", world });
    expect(b64(r.stdout_b64).trim().split("\n")).toEqual(EXPECTED_DENIALS);
  });
});

describe("the spawner of a regular caller's world", () => {
  test("runs as the caller with no capabilities in any thread; the caller cannot reach it either", () => {
    const mine = userProject(alice);
    const r = apiAs(alice, agent.socket, "POST", "/v1/execute", { cmd: attackScript(2), cwd: mine, agent_id: "u" });
    expect(r.status).toBe(200);
    expect(out(r).trim().split("\n")).toEqual(EXPECTED_DENIALS);
    for (const t of taskStatus(spawnerOf(r.body.world_id))) {
      expect(t.Uid!.split(/\s+/)).toEqual(Array(4).fill(String(alice.uid)));
      expect(t.CapEff).toMatch(/^0+$/);
      expect(t.CapPrm).toMatch(/^0+$/);
      expect(t.NoNewPrivs).toBe("1");
      expect(t.Seccomp).toBe("2");
    }
    const again = apiAs(alice, agent.socket, "POST", "/v1/execute", { cmd: "true", cwd: mine, agent_id: "u" });
    expect(again.body.world_id).toBe(r.body.world_id);
  });
});
