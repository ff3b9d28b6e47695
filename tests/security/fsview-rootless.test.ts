/**
 * Issue 13 (FSVIEW) through a ROOTLESS agent run by a throwaway user (no root anywhere in the
 * world's chain): the same fs view as through the root agent, and the attack that the real
 * home made possible — a command connecting to its own agent's socket (~/.substrate/run, now
 * visible read-only; a read-only mount does not stop connect(2)) to ask for a wider world.
 * Judged on the host.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { agentArgv } from "../helpers/agent.ts";
import { AgentClient } from "../../src/api/client.ts";
import { DEFAULT_DENY_READ } from "../../src/contract/world.ts";
import { apiAs, createUser, out, type TestUser } from "./_users.ts";

let u: TestUser;
const asUser = (line: string) => {
  const r = Bun.spawnSync(["setpriv", `--reuid=${u.uid}`, `--regid=${u.gid}`, "--init-groups", "--", "bash", "-c", line], {
    cwd: u.home,
    env: { HOME: u.home, PATH: "/usr/bin:/bin" },
    stdout: "pipe",
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`as ${u.name}: ${line}: ${r.stderr.toString()}`);
  return r.stdout.toString();
};
const view = (write: string[] = ["~/.cache/**"], more: Record<string, unknown> = {}) => ({
  read: ["/**"],
  write: ["$PROJECT/**", "/tmp/**", ...write],
  deny_read: [...DEFAULT_DENY_READ],
  read_only: [],
  ...more,
});

beforeAll(() => {
  u = createUser("sbfr");
  asUser("mkdir -p ~/.ssh && echo PRIVATE-KEY-MATERIAL > ~/.ssh/id_ed25519");
});
afterAll(() => u?.remove());

describe("a rootless agent (the user's own, no root anywhere)", () => {
  let proc: ReturnType<typeof Bun.spawn> | undefined;
  let sock: string;
  let rproj: string;
  beforeAll(async () => {
    const run = join(u.home, ".substrate/run"); // the rootless default: inside the (visible) home
    asUser(`mkdir -p ${run} && chmod 700 ${run}`);
    rproj = join(u.home, "rootless-proj");
    asUser(`mkdir -p ${rproj} && rm -rf ~/.cache`);
    sock = join(run, "substrate.sock");
    proc = Bun.spawn(["setpriv", `--reuid=${u.uid}`, `--regid=${u.gid}`, "--init-groups", "--", ...agentArgv(), "--listen", sock, "--state-dir", join(run, "state")], {
      env: { HOME: u.home, PATH: "/usr/local/bin:/usr/bin:/bin", SUBSTRATE_OVERLAY_DIR: join(run, "overlay"), BUN_GC_TIMER_DISABLE: "1" },
      stdout: "ignore",
      stderr: "pipe",
    });
    const client = new AgentClient(sock);
    for (let i = 0; i < 400; i++) {
      if (proc.exitCode !== null) throw new Error(`rootless agent exited ${proc.exitCode}`);
      try {
        await client.capabilities(500);
        break;
      } catch {
        await Bun.sleep(25);
      }
    }
  });
  afterAll(async () => {
    if (proc) {
      proc.kill("SIGTERM");
      await proc.exited;
    }
  });
  const rexec = (cmd: string) => {
    const r = apiAs(u, sock, "POST", "/v1/execute", { agent_id: "fsview-rootless", cwd: rproj, cmd, world: { project_dir: rproj, isolate_network: false, fs_view: view() } });
    if (r.status !== 200) console.error(`rootless execute ${r.status}: ${JSON.stringify(r.body)}`);
    return r;
  };

  test("same view: real $HOME read-only, secrets hidden, ~/.cache lands on the host, elsewhere refused", () => {
    const r = rexec('id -u; echo "$HOME"; cat ~/.ssh/id_ed25519 2>/dev/null || echo hidden; echo r > ~/.cache/rootless && echo cached; touch ~/elsewhere 2>/dev/null || echo refused');
    expect(r.status).toBe(200);
    expect(out(r).trim().split("\n")).toEqual([String(u.uid), u.home, "hidden", "cached", "refused"]);
    expect(readFileSync(join(u.home, ".cache/rootless"), "utf8")).toBe("r\n");
    expect(statSync(join(u.home, ".cache/rootless")).uid).toBe(u.uid);
    expect(existsSync(join(u.home, "elsewhere"))).toBe(false);
  });

  test("the world cannot reach its own agent: ~/.substrate/run is hidden whatever deny_read says", () => {
    const r = apiAs(u, sock, "POST", "/v1/execute", {
      agent_id: "fsview-rootless",
      cwd: rproj,
      cmd: "ls -A ~/.substrate/run | wc -l; curl -s --max-time 3 --unix-socket ~/.substrate/run/substrate.sock http://x/v1/capabilities >/dev/null && echo REACHED || echo unreachable",
      world: { project_dir: rproj, isolate_network: false, fs_view: view(["~/.cache/**"], { deny_read: [] }) },
    });
    expect(r.status).toBe(200);
    expect(out(r).trim().split("\n")).toEqual(["0", "unreachable"]);
  });
});
