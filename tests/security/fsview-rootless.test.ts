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
import { DEFAULT_DENY_READ } from "../../src/contract/world.ts";
import { apiAs, createUser, out, shAs, startRootlessAgent, type RootlessAgent, type TestUser } from "./_users.ts";

let u: TestUser;
const asUser = (line: string) => shAs(u, line);
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
  let agent: RootlessAgent;
  let sock: string;
  let rproj: string;
  beforeAll(async () => {
    rproj = join(u.home, "rootless-proj");
    asUser(`mkdir -p ${rproj} && rm -rf ~/.cache`);
    agent = await startRootlessAgent(u);
    sock = agent.socket;
  });
  afterAll(async () => {
    await agent?.stop();
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
