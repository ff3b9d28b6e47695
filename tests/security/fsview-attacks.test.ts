/**
 * Issue 13 / 14.3 (FSVIEW): attacks on the world's filesystem view, each judged by its effect
 * on the HOST (a write into the world's own tmpfs is no escape):
 * - a symlinked ~/.cache (→ /etc, → another user's directory) named by `fs.write`;
 * - the git-hook attack (a hook written, the hooks dir missing, .git moved away, config edited);
 * - a missing agent-config dir (.claude) created to plant settings; placeholders go at world end;
 * - setuid / file-capability copies made in the project.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { startAgent, type TestAgent } from "../helpers/agent.ts";
import { apiAs, createUser, err, openSocket, out, userProject, type TestUser } from "./_users.ts";

let agent: TestAgent;
let u: TestUser;
let bob: TestUser;
const probe = `zz-substrate-fsview-probe-${process.pid}`;

const asUser = (who: TestUser, line: string) => {
  const r = Bun.spawnSync(["setpriv", `--reuid=${who.uid}`, `--regid=${who.gid}`, "--init-groups", "--", "bash", "-c", line], {
    cwd: who.home,
    env: { HOME: who.home, PATH: "/usr/bin:/bin" },
    stdout: "pipe",
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`as ${who.name}: ${line}: ${r.stderr.toString()}`);
  return r.stdout.toString();
};
const execAs = (who: TestUser, proj: string, cmd: string, write: string[] = ["~/.cache/**"], deny: string[] = []) => {
  const r = apiAs(who, agent.socket, "POST", "/v1/execute", {
    agent_id: "fsview-attack",
    cwd: proj,
    cmd,
    world: { project_dir: proj, isolate_network: false, fs_view: { read: ["/**"], write, deny_read: deny, read_only: [] } },
  });
  if (r.status !== 200) console.error(`execute ${r.status}: ${JSON.stringify(r.body)}`);
  return r;
};

beforeAll(async () => {
  agent = await startAgent();
  openSocket(agent.socket);
  u = createUser("sbfa");
  bob = createUser("sbfb");
});
/** Cleanups that must run after the agent (and so every world running as that user) is gone. */
const later: (() => void)[] = [];
afterAll(async () => {
  rmSync(`/etc/${probe}`, { force: true });
  await agent.stop();
  u?.remove();
  bob?.remove();
  for (const f of later) f();
});

describe("fs.write resolves as the caller", () => {
  test("~/.cache → /etc: nothing writable, nothing lands in the host's /etc", () => {
    const proj = userProject(u, "p-etc");
    symlinkSync("/etc", join(u.home, ".cache"));
    try {
      const r = execAs(u, proj, `touch ~/.cache/${probe}; echo rc=$?; touch /etc/${probe}; echo rc=$?`);
      expect(r.status).toBe(200);
      expect(out(r)).toBe("rc=1\nrc=1\n");
      expect(existsSync(`/etc/${probe}`)).toBe(false);
    } finally {
      rmSync(join(u.home, ".cache"));
    }
  });

  test("~/.cache → another user's world-writable directory: not the caller's, not bound", () => {
    const proj = userProject(u, "p-bob");
    const bobsDir = join(bob.home, "shared");
    asUser(bob, `mkdir -p ${bobsDir} && chmod 777 ${bobsDir}`);
    symlinkSync(bobsDir, join(u.home, ".cache"));
    try {
      const r = execAs(u, proj, `touch ~/.cache/${probe} 2>&1; echo rc=$?`);
      expect(out(r)).toContain("rc=1");
      expect(readdirSync(bobsDir)).toEqual([]);
    } finally {
      rmSync(join(u.home, ".cache"));
    }
  });

  test("~/.cache → a directory the caller owns elsewhere: that directory is the writable one", () => {
    const proj = userProject(u, "p-own");
    const elsewhere = join(u.home, "real-cache");
    asUser(u, `mkdir -p ${elsewhere}`);
    symlinkSync(elsewhere, join(u.home, ".cache"));
    try {
      const r = execAs(u, proj, `echo ok > ~/.cache/blob && cat ~/.cache/blob; grep ' ${elsewhere} ' /proc/self/mountinfo`);
      const [ok, mnt] = out(r).split("\n");
      expect(ok).toBe("ok");
      // issue 14.3: every writable bind is nosuid,nodev
      expect(mnt).toMatch(/\bnosuid\b/);
      expect(mnt).toMatch(/\bnodev\b/);
      expect(mnt).toMatch(/ rw,/);
      expect(statSync(join(elsewhere, "blob")).uid).toBe(u.uid);
    } finally {
      rmSync(join(u.home, ".cache"));
    }
  });

  test("a write entry outside anything the caller owns (/usr/local) is not writable", () => {
    const proj = userProject(u, "p-usr");
    const r = execAs(u, proj, `touch /usr/local/${probe} 2>&1; echo rc=$?`, ["/usr/local/**"]);
    expect(out(r)).toContain("rc=1");
    expect(existsSync(`/usr/local/${probe}`)).toBe(false);
  });
});

describe("a home behind a symlink (e.g. /home -> /var/home)", () => {
  test("secrets stay hidden, HOME resolves, ~/.cache lands on the host", () => {
    const base = mkdtempSync("/tmp/substrate-symhome-");
    chmodSync(base, 0o755);
    const name = `sbfs${process.pid % 100000}`;
    const real = join(base, "real");
    const link = join(base, "link");
    mkdirSync(real);
    symlinkSync(real, link);
    const add = Bun.spawnSync(["useradd", "-M", "-d", link, "-s", "/bin/bash", "-U", name], { stderr: "pipe" });
    if (add.exitCode !== 0) throw new Error(add.stderr.toString());
    try {
      const id = (f: string) => Number(Bun.spawnSync(["id", f, name], { stdout: "pipe" }).stdout.toString().trim());
      const who: TestUser = { name, uid: id("-u"), gid: id("-g"), home: link, remove() {} };
      Bun.spawnSync(["chown", `${name}:`, real]);
      asUser(who, `mkdir -p ~/.ssh ~/p && echo PRIVATE-KEY > ~/.ssh/id_ed25519`);
      const r = execAs(who, join(link, "p"), 'echo "$HOME"; cat ~/.ssh/id_ed25519 2>/dev/null || echo hidden; echo c > ~/.cache/x && echo cached', ["~/.cache/**"], ["~/.ssh"]);
      expect(r.status).toBe(200);
      expect(out(r)).not.toContain("PRIVATE-KEY");
      expect(out(r).trim().split("\n")).toEqual([link, "hidden", "cached"]);
      expect(statSync(join(real, ".cache/x")).uid).toBe(who.uid);
    } finally {
      // userdel refuses while the user's session world runs: after the agent stops.
      later.push(() => {
        Bun.spawnSync(["userdel", name], { stderr: "ignore" });
        Bun.spawnSync(["groupdel", name], { stderr: "ignore" });
        rmSync(base, { recursive: true, force: true });
      });
    }
  });
});

describe("the git-hook attack leaves nothing on the host", () => {
  const hook = "printf '#!/bin/sh\\ntouch /tmp/pwned\\n' > .git/hooks/post-checkout && chmod +x .git/hooks/post-checkout";

  test("writing a hook, editing .git/config, moving .git away and back: all refused", () => {
    const proj = userProject(u, "p-git");
    asUser(u, `cd ${proj} && git init -q`);
    const cfg = asUser(u, `sha256sum ${proj}/.git/config`);
    const attempts = [
      hook,
      "git config core.hooksPath .evil",
      "echo '[core]\n\tfsmonitor = touch /tmp/pwned' >> .git/config",
      "mv .git .git-away",
      "cp -r .git /tmp/g && rm -rf .git/hooks",
      "ln -sf /tmp/evil .git/hooks/pre-commit",
    ];
    const r = execAs(u, proj, attempts.map((a) => `( ${a} ) 2>/dev/null && echo LANDED`).join("; ") + "; true");
    expect(r.status).toBe(200);
    expect(out(r)).toBe("");
    expect(existsSync(join(proj, ".git/hooks/post-checkout"))).toBe(false);
    expect(existsSync(join(proj, ".git/hooks/pre-commit"))).toBe(false);
    expect(existsSync(join(proj, ".git-away"))).toBe(false);
    expect(asUser(u, `sha256sum ${proj}/.git/config`)).toBe(cfg);
    // git itself still works in the world (objects, refs, index are writable).
    const c = execAs(u, proj, "git -c user.name=a -c user.email=a@b commit -q --allow-empty -m ok && git log --oneline | wc -l");
    expect(out(c).trim()).toBe("1");
  });

  test("a repository whose hooks dir is missing: the hook still cannot be created", () => {
    const proj = userProject(u, "p-nohooks");
    asUser(u, `cd ${proj} && git init -q && rm -rf .git/hooks`);
    const r = execAs(u, proj, `mkdir -p .git/hooks 2>/dev/null; ( ${hook} ) 2>/dev/null && echo LANDED; true`);
    expect(out(r)).toBe("");
    expect(existsSync(join(proj, ".git/hooks/post-checkout"))).toBe(false);
    // The placeholder is empty and the caller's (git creates hooks/ itself at init).
    expect(readdirSync(join(proj, ".git/hooks"))).toEqual([]);
    expect(statSync(join(proj, ".git/hooks")).uid).toBe(u.uid);
  });

  test("a worktree's .git FILE and a submodule's git dir (inside .git/modules) are protected too", () => {
    // A project whose .git is a file (`git worktree add`, --separate-git-dir, a submodule checkout).
    const wtProj = userProject(u, "p-wt");
    const gitdir = join(u.home, "p-wt-gitdir");
    asUser(u, `git init -q --separate-git-dir=${gitdir} ${wtProj}`);
    const gitFile = asUser(u, `cat ${wtProj}/.git`);
    const a = execAs(u, wtProj, "( echo 'gitdir: /tmp/evil' > .git ) 2>/dev/null && echo LANDED; true");
    expect(out(a)).toBe("");
    expect(asUser(u, `cat ${wtProj}/.git`)).toBe(gitFile);
    // A submodule's git dir lives in the superproject's .git/modules/<name>.
    const proj = userProject(u, "p-sub");
    asUser(u, `cd ${proj} && git init -q && git init -q --bare .git/modules/lib`);
    const r = execAs(
      u,
      proj,
      ["echo 'touch /tmp/pwned' > .git/modules/lib/hooks/post-checkout", "echo '[core] fsmonitor = touch /tmp/pwned' >> .git/modules/lib/config"]
        .map((c, i) => `( ${c} ) 2>/dev/null && echo LANDED ${i}`)
        .join("; ") + "; true",
    );
    expect(out(r)).toBe("");
    expect(existsSync(join(proj, ".git/modules/lib/hooks/post-checkout"))).toBe(false);
    expect(asUser(u, `grep -c fsmonitor ${proj}/.git/modules/lib/config || true`).trim()).toBe("0");
  });

  test("a missing .claude/ cannot be created to plant settings; its placeholder goes with the world", () => {
    const proj = userProject(u, "p-claude");
    const r = execAs(u, proj, "mkdir -p .claude 2>/dev/null; echo '{\"hooks\":{}}' > .claude/settings.json 2>/dev/null && echo LANDED; true");
    expect(out(r)).toBe("");
    expect(existsSync(join(proj, ".claude/settings.json"))).toBe(false);
    expect(lstatSync(join(proj, ".claude")).isDirectory()).toBe(true); // the empty placeholder
    expect(apiAs(u, agent.socket, "DELETE", `/v1/worlds/${r.body.world_id}`).status).toBe(200);
    expect(existsSync(join(proj, ".claude"))).toBe(false); // removed: it was still empty
  });
});

describe("issue 14.3: setuid and file-capability copies are inert on the host", () => {
  let rootProj: string;
  beforeAll(() => {
    rootProj = mkdtempSync("/var/tmp/substrate-rootproj-");
    chmodSync(rootProj, 0o755);
  });
  afterAll(() => rmSync(rootProj, { recursive: true, force: true }));

  test("the project is mounted nosuid,nodev (root-owned project, root caller)", async () => {
    const r = await agent.client.execute({ cmd: `grep ' ${rootProj} ' /proc/self/mountinfo`, cwd: rootProj, agent_id: "suid", world: { project_dir: rootProj, isolate_network: false } });
    const line = Buffer.from(r.stdout_b64, "base64").toString();
    expect(line).toMatch(/\bnosuid\b/);
    expect(line).toMatch(/\bnodev\b/);
  });

  test("chmod 4755 / setcap on copies in the project: no setuid bit, no capability on the host", async () => {
    const r = await agent.client.execute({
      cmd: "cp /bin/bash ./sbash; chmod 4755 ./sbash; chmod u+s,g+s ./sbash; install -m 6755 /bin/bash ./ibash; cp /bin/true ./ctrue; setcap cap_setuid+ep ./ctrue; mknod ./dev-null c 1 3; true",
      cwd: rootProj,
      agent_id: "suid",
      world: { project_dir: rootProj, isolate_network: false },
    });
    expect(r.exit).toBe(0);
    for (const f of ["sbash", "ibash"]) {
      if (!existsSync(join(rootProj, f))) continue;
      expect(statSync(join(rootProj, f)).mode & 0o6000).toBe(0);
    }
    const caps = Bun.spawnSync(["getcap", join(rootProj, "ctrue")], { stdout: "pipe" }).stdout.toString();
    expect(caps.trim()).toBe("");
    expect(existsSync(join(rootProj, "dev-null")) && statSync(join(rootProj, "dev-null")).isCharacterDevice()).toBe(false);
    void err;
  });
});
