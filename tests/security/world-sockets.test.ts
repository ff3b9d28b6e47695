/**
 * Issues 13/14: a read-only mount does not stop connect(2), so any Unix socket a world can
 * see is a door: the agent's socket (ask for a wider world), another world's control socket
 * (run commands there, as its uid), a gateway socket. Attack: from a root caller's world with the
 * default policy view (every top-level host dir readable), list every socket reachable in the
 * filesystem and try to connect to each. Nothing of the host's may answer.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { b64, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";
import { DEFAULT_DENY_READ } from "../../src/contract/world.ts";

let agent: TestAgent;
let proj: string;
const base = `/var/lib/substrate/test-sockets-${process.pid}`;

beforeAll(async () => {
  // The agent's socket and state (every world's ctl socket, gateway sockets) under /var/lib: a
  // top-level dir the default view shows read-only. A victim world of another agent id exists.
  require("node:fs").mkdirSync(base, { recursive: true, mode: 0o711 });
  agent = await startAgent({ socket: `${base}/agent.sock`, stateDir: `${base}/state` });
  proj = tempProject();
  await agent.client.execute({ cmd: "true", cwd: proj, agent_id: "victim" });
});
afterAll(async () => {
  await agent?.stop();
  require("node:fs").rmSync(base, { recursive: true, force: true });
});

test("no host socket is reachable from a world (agent, other worlds' ctl, gateways)", async () => {
  const view = { read: ["/**"], write: ["$PROJECT/**", "/tmp/**"], deny_read: [...DEFAULT_DENY_READ], read_only: [] };
  const script = String.raw`
for s in $(find / -xdev -type s 2>/dev/null; find /var /run /home /srv /opt -type s 2>/dev/null); do
  case "$s" in /tmp/*|/var/tmp/*|/run/*) continue;; esac   # the world's own scratch
  if python3 -c 'import socket,sys; c=socket.socket(socket.AF_UNIX); c.settimeout(1); c.connect(sys.argv[1])' "$s" 2>/dev/null; then echo "OPEN $s"; else echo "closed $s"; fi
done | sort -u`;
  const r = await agent.client.execute({ cmd: script, cwd: proj, agent_id: "attacker", world: { fs_view: view } });
  expect(r.exit).toBe(0);
  const open = b64(r.stdout_b64).split("\n").filter((l) => l.startsWith("OPEN "));
  expect(open).toEqual([]);
});
