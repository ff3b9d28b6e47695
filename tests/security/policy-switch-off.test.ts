/**
 * Issue 14 item 4: a command in a world cannot switch off the policy that governs later
 * commands. On the previous main the nearest `.substrate-profile` (in the writable project)
 * selected the policy and a missing one fell back to the observe-mode built-in, so from inside a
 * world `rm .substrate-profile`, `echo default > .substrate-profile` or a `sub/.substrate-profile`
 * naming a weaker policy turned the denied `curl` into one that ran.
 *
 * Here each attack runs for real in a world of a real agent (through the CLI), then `curl`
 * is tried; judged on the host by a marker file the fake curl would write into the project.
 * The world's fs view now also keeps an existing `.substrate-profile` read-only (docs/WORLD.md),
 * so there the in-world write may fail; the test then makes the same change on the host, standing
 * in for any way a world gets to change the file, and the broker must still deny.
 * The control (same fake curl, a project with no record and no profile → the observe-mode
 * built-in) shows that where no policy denies it, the marker does appear.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hostArgv, startAgent, type TestAgent } from "../helpers/agent.ts";
import { createUser, openSocket, userProject, type TestUser } from "./_users.ts";

// The CLI runs as a throwaway user (HOME = its home, its ~/.substrate): the agent decides every
// execute again with the caller's own policy (agent/policyd.ts), so both gates read one home.
let agent: TestAgent;
let u: TestUser;
let n = 0;

beforeAll(async () => {
  agent = await startAgent();
  openSocket(agent.socket);
  u = createUser("sbps");
  const pol = join(u.home, ".substrate", "policies");
  mkdirSync(pol, { recursive: true });
  writeFileSync(join(pol, "strict.yaml"), "id: strict\nname: Strict\nmode: enforce\ncommands:\n  denied: ['curl *']\n");
  writeFileSync(join(pol, "weak.yaml"), "id: weak\nname: Weak\nmode: observe\n");
  writeFileSync(join(pol, "stricter.yaml"), "id: stricter\nname: Stricter\nmode: enforce\ncommands:\n  denied: ['curl *', 'touch *']\n");
  for (const d of [join(u.home, ".substrate"), pol]) chownSync(d, u.uid, u.gid);
});
afterAll(async () => {
  await agent?.stop();
  u?.remove();
});

/** A project of the user selecting `strict`, with a fake curl (in the project, so the world has it) that leaves a marker. */
function project(profile: string | null = "strict\n"): string {
  const p = userProject(u, `p${n++}`);
  const own = (f: string) => chownSync(f, u.uid, u.gid);
  mkdirSync(join(p, ".git"));
  mkdirSync(join(p, ".fakebin"));
  writeFileSync(join(p, ".fakebin", "curl"), `#!/bin/sh\n: > "${p}/curl-ran-$1"\n`);
  chmodSync(join(p, ".fakebin", "curl"), 0o755);
  for (const f of [".git", ".fakebin", ".fakebin/curl"]) own(join(p, f));
  if (profile !== null) {
    writeFileSync(join(p, ".substrate-profile"), profile);
    own(join(p, ".substrate-profile"));
  }
  return p;
}

/** `substrate ARGS` as the user, in `cwd` (a world of the test agent for `-c`). */
function substrateAs(args: string[], cwd: string, proj: string): { code: number | null; out: string; err: string } {
  const r = Bun.spawnSync(["setpriv", `--reuid=${u.uid}`, `--regid=${u.gid}`, "--init-groups", "--", ...hostArgv(), ...args], {
    cwd,
    env: {
      HOME: u.home,
      PATH: `${proj}/.fakebin:/usr/local/bin:/usr/bin:/bin`,
      SUBSTRATE_WORLD: "enabled",
      SUBSTRATE_WORLD_SOCKET: agent.socket,
      SUBSTRATE_TRACE: join(u.home, "trace.jsonl"),
      LANG: "C.UTF-8",
    },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: 60_000,
  });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
}
const inWorld = (proj: string, cmd: string, cwd = proj) => substrateAs(["-c", cmd], cwd, proj);

describe("nothing a world writes weakens the policy of later commands", () => {
  test("control: with no policy denying it, the fake curl runs and leaves its marker", () => {
    const p = project(null);
    const r = inWorld(p, "curl control");
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(existsSync(join(p, "curl-ran-control"))).toBe(true);
  });

  test("`rm .substrate-profile` in the world: curl stays denied", () => {
    const p = project();
    expect(inWorld(p, "curl before")).toMatchObject({ code: 126 });
    inWorld(p, "rm .substrate-profile"); // refused by the fs view (read-only), or done: either way…
    rmSync(join(p, ".substrate-profile"), { force: true }); // …the file is gone on the host now (as if the world did it)
    const r = inWorld(p, "curl after");
    expect(r.code).toBe(126);
    expect(r.err).toContain("denied by policy strict");
    expect(existsSync(join(p, "curl-ran-after"))).toBe(false);
    expect(existsSync(join(p, "curl-ran-before"))).toBe(false);
  });

  test("the world points .substrate-profile at the observe-mode default: curl stays denied", () => {
    const p = project();
    expect(inWorld(p, "curl first")).toMatchObject({ code: 126 });
    inWorld(p, "echo default > .substrate-profile");
    writeFileSync(join(p, ".substrate-profile"), "default\n"); // (as if the world did it)
    const r = inWorld(p, "curl after");
    expect(r.code).toBe(126);
    expect(r.err).toContain('names policy "default", which is not at least as strict');
    expect(existsSync(join(p, "curl-ran-after"))).toBe(false);
  });

  test("the world writes sub/.substrate-profile (and sub/.git) naming a weaker policy: curl in sub stays denied", () => {
    const p = project();
    expect(inWorld(p, "curl first")).toMatchObject({ code: 126 });
    expect(inWorld(p, "mkdir -p sub/.git && echo weak > sub/.substrate-profile").code).toBe(0);
    expect(existsSync(join(p, "sub", ".substrate-profile"))).toBe(true);
    const r = inWorld(p, "curl sub", join(p, "sub"));
    expect(r.code).toBe(126);
    expect(r.err).toContain("denied by policy strict");
    expect(existsSync(join(p, "sub", "curl-ran-sub"))).toBe(false);
    expect(existsSync(join(p, "curl-ran-sub"))).toBe(false);
    // and `policy show` there says where the selection came from and what it ignored
    const show = substrateAs(["policy", "show"], join(p, "sub"), p);
    expect(show.code).toBe(0);
    expect(show.out).toContain(`# selected by: the host-side record for ${p} (`);
    expect(show.out).toContain(`# ignored:     ${join(p, "sub", ".substrate-profile")} names "weak"`);
  });

  test("a stricter profile written in the world is obeyed (a project file may tighten), and removing it does not loosen it", () => {
    const p = project();
    const sub = join(p, "sub");
    expect(inWorld(p, "touch t1").code).toBe(0);
    expect(inWorld(p, "mkdir sub && echo stricter > sub/.substrate-profile").code).toBe(0);
    const r = inWorld(p, "touch t2", sub);
    expect(r.code).toBe(126);
    expect(existsSync(join(sub, "t2"))).toBe(false);
    // removed in the world — or, when a new world pinned the now existing file read-only, on the host
    inWorld(p, "rm sub/.substrate-profile");
    rmSync(join(sub, ".substrate-profile"), { force: true });
    expect(inWorld(p, "touch t3", sub).code).toBe(126);
    expect(existsSync(join(sub, "t3"))).toBe(false);
  });
});

describe("the same through the agent's own socket (the agent-side gate, agent/policyd.ts)", () => {
  test("a direct client's world writes a weaker sub/.substrate-profile: curl in sub stays refused", async () => {
    const { apiAs } = await import("./_users.ts");
    const p = project();
    const run = (cmd: string, cwd = p) => apiAs(u, agent.socket, "POST", "/v1/execute", { agent_id: "direct", cwd, cmd, env: { PATH: `${p}/.fakebin:/usr/bin:/bin` } });
    expect(run("curl first").status).toBe(403);
    const w = run("mkdir -p sub/.git && echo weak > sub/.substrate-profile");
    expect(w.status).toBe(200);
    expect(existsSync(join(p, "sub", ".substrate-profile"))).toBe(true);
    const r = run("curl sub", join(p, "sub"));
    expect(r.status).toBe(403);
    expect(existsSync(join(p, "sub", "curl-ran-sub"))).toBe(false);
  });
});
