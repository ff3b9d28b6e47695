/**
 * Issue 13 (FSVIEW) for real: a throwaway regular user calls the root agent (SO_PEERCRED),
 * and the world is that user's environment shaped by the policy's fs view — the real $HOME
 * read-only minus secrets, `fs.write` binds that land on the host, a bounded scratch, a
 * read-only /sys with the world's own cgroup. Also the root caller (the test itself).
 * Judged on the host wherever a write is concerned.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hostArgv, startAgent, type TestAgent } from "../helpers/agent.ts";
import { apiAs, createUser, err, openSocket, out, userProject, type TestUser } from "../security/_users.ts";
import { DEFAULT_DENY_READ } from "../../src/contract/world.ts";

let agent: TestAgent;
let u: TestUser;
let proj: string;

/** Run a shell line as `u` (host side, for setup). */
const asUser = (line: string, cwd?: string) => {
  const r = Bun.spawnSync(["setpriv", `--reuid=${u.uid}`, `--regid=${u.gid}`, "--init-groups", "--", "bash", "-c", line], {
    cwd: cwd ?? u.home,
    env: { HOME: u.home, PATH: "/usr/bin:/bin", USER: u.name },
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
const exec = (cmd: string, world: Record<string, unknown> = {}) => {
  const r = apiAs(u, agent.socket, "POST", "/v1/execute", {
    agent_id: "fsview",
    cwd: proj,
    cmd,
    world: { project_dir: proj, isolate_network: false, fs_view: view(), ...world },
  });
  if (r.status !== 200) console.error(`execute ${r.status}: ${JSON.stringify(r.body)}\n${agent.stderr().slice(-1500)}`);
  return r;
};

beforeAll(async () => {
  agent = await startAgent();
  openSocket(agent.socket);
  u = createUser("sbfv");
  proj = userProject(u);
  asUser(
    [
      "git config --global user.name 'Fs View'",
      "git config --global user.email fsview@example.test",
      "mkdir -p ~/.ssh ~/.docker && chmod 700 ~/.ssh",
      "echo PRIVATE-KEY-MATERIAL > ~/.ssh/id_ed25519",
      "echo '{\"auths\":{\"x\":{\"auth\":\"c2VjcmV0\"}}}' > ~/.docker/config.json",
      "echo 'machine x login me password hunter2' > ~/.netrc",
      `cd ${proj} && git init -q && echo hi > README && git add README`,
    ].join(" && "),
  );
});
afterAll(async () => {
  await agent.stop();
  u?.remove();
});

describe("a regular user's world (root agent)", () => {
  test("runs as the user with $HOME = the real home, visible read-only", () => {
    const r = exec('id -u; echo "$HOME"; cat ~/.gitconfig | grep -c email; touch ~/new-file 2>&1; echo rc=$?');
    expect(r.status).toBe(200);
    const lines = out(r).trim().split("\n");
    expect(lines[0]).toBe(String(u.uid));
    expect(lines[1]).toBe(u.home);
    expect(lines[2]).toBe("1");
    expect(out(r)).toContain("Read-only file system");
    expect(existsSync(join(u.home, "new-file"))).toBe(false);
  });

  test("git commit in the project works with the host's ~/.gitconfig identity", () => {
    const r = exec("git commit -q -m 'from the world' && git log -1 --format='%an <%ae>'");
    expect(r.status).toBe(200);
    expect(err(r)).toBe("");
    expect(out(r).trim()).toBe("Fs View <fsview@example.test>");
    // ...and the commit is on the host.
    expect(asUser("git log -1 --format=%s", proj).trim()).toBe("from the world");
  });

  test("secrets are hidden: ~/.ssh looks empty, files read as empty, nothing leaks", () => {
    const r = exec("cat ~/.ssh/id_ed25519; echo rc=$?; ls -A ~/.ssh | wc -l; wc -c < ~/.docker/config.json; wc -c < ~/.netrc; grep -r hunter2 ~ 2>/dev/null | wc -l");
    expect(r.status).toBe(200);
    expect(err(r)).toContain("No such file or directory");
    expect(out(r)).not.toContain("PRIVATE-KEY");
    const lines = out(r).trim().split("\n");
    expect(lines).toEqual(["rc=1", "0", "0", "0", "0"]);
    // The host's files are untouched.
    expect(readFileSync(join(u.home, ".ssh/id_ed25519"), "utf8")).toContain("PRIVATE-KEY");
  });

  test("a write to ~/.cache lands on the host (owned by the user) and the next world sees it", () => {
    const a = exec("mkdir -p ~/.cache/tool && echo cached > ~/.cache/tool/blob && echo ok");
    expect(a.status).toBe(200);
    expect(out(a).trim()).toBe("ok");
    const blob = join(u.home, ".cache/tool/blob");
    expect(readFileSync(blob, "utf8")).toBe("cached\n");
    expect(statSync(blob).uid).toBe(u.uid);
    expect(statSync(join(u.home, ".cache")).uid).toBe(u.uid); // created for the caller
    // A new world (this one deleted): the cache persists.
    expect(apiAs(u, agent.socket, "DELETE", `/v1/worlds/${a.body.world_id}`).status).toBe(200);
    const b = exec("cat ~/.cache/tool/blob");
    expect(b.body.world_id).not.toBe(a.body.world_id);
    expect(out(b)).toBe("cached\n");
  });

  test("a new fs.write path is writable in the next command (a new world with the new view)", () => {
    const before = exec("mkdir -p ~/.newtool/x 2>&1; echo rc=$?");
    expect(out(before)).toContain("Read-only file system");
    expect(existsSync(join(u.home, ".newtool"))).toBe(false);
    const after = exec("echo v > ~/.newtool/state && cat ~/.newtool/state", { fs_view: view(["~/.cache/**", "~/.newtool/**"]) });
    expect(after.status).toBe(200);
    expect(out(after)).toBe("v\n");
    expect(after.body.world_id).not.toBe(before.body.world_id);
    expect(readFileSync(join(u.home, ".newtool/state"), "utf8")).toBe("v\n");
    expect(statSync(join(u.home, ".newtool")).uid).toBe(u.uid);
  });

  test("a policy's deny_read replaces the default list; read_only adds to the built-in one", () => {
    asUser(`printf 'all:\\n' > ${proj}/Makefile`);
    const r = exec("cat ~/.ssh/id_ed25519; echo x >> Makefile; echo rc=$?", { fs_view: view(["~/.cache/**"], { deny_read: [], read_only: ["$PROJECT/Makefile"] }) });
    expect(out(r)).toContain("PRIVATE-KEY"); // the user's own choice: nothing hidden
    expect(out(r)).toContain("rc=1");
    expect(err(r)).toContain("Read-only file system");
    expect(readFileSync(join(proj, "Makefile"), "utf8")).toBe("all:\n");
  });

  test("each always-read-only path refuses writes; nothing lands on the host", () => {
    asUser(`cd ${proj} && mkdir -p .vscode .claude && echo '{}' > .vscode/settings.json && echo 'export A=1' > .envrc && echo '{}' > .mcp.json && echo default > .substrate-profile`);
    const before = asUser(`cd ${proj} && sha256sum .git/config .envrc .mcp.json .substrate-profile .vscode/settings.json && ls -A .git/hooks .claude | sort`);
    const attempts = [
      "echo '[core] hooksPath = /tmp' >> .git/config",
      "git config core.fsmonitor 'touch /tmp/pwn'",
      "echo 'touch /tmp/pwn' > .git/hooks/post-checkout",
      "echo evil >> .envrc",
      "rm -f .envrc",
      "mv .mcp.json x.json",
      "echo other > .substrate-profile",
      "echo '{\"x\":1}' > .vscode/settings.json",
      "echo '{\"hooks\":{}}' > .claude/settings.json",
      "rm -rf .claude",
      "mv .git .git-away",
    ];
    const r = exec(attempts.map((a) => `{ ${a}; } 2>/dev/null && echo "LANDED: ${a.replaceAll('"', "")}"`).join("; ") + "; true");
    expect(r.status).toBe(200);
    expect(out(r)).toBe("");
    const after = asUser(`cd ${proj} && sha256sum .git/config .envrc .mcp.json .substrate-profile .vscode/settings.json && ls -A .git/hooks .claude | sort`);
    expect(after).toBe(before);
    expect(existsSync(join(proj, ".git/hooks/post-checkout"))).toBe(false);
    expect(existsSync(join(proj, ".claude/settings.json"))).toBe(false);
  });

  test("/sys is read-only and /sys/fs/cgroup shows the world's own memory limit", () => {
    const r = exec(
      "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; cat /proc/self/cgroup | grep memory; touch /sys/x 2>/dev/null || echo refused; ls /sys/class/net | sort | tr '\\n' ' '",
      { limits: { memory: "256Mi" } },
    );
    expect(r.status).toBe(200);
    const [limit, cg, ro, nets] = out(r).trim().split("\n");
    // The world's cgroup carries the limit plus the world's own headroom (64 MiB, session.ts).
    expect(Number(limit)).toBe((256 + 64) * 1024 * 1024);
    expect(cg).toMatch(/^\d+:memory:\/$/); // its own cgroup is the root (cgroup namespace)
    expect(ro).toBe("refused");
    expect(nets).toContain("lo");
  });

  test("scratch is one bounded tmpfs (half the memory limit) shared by /tmp and /var/tmp", () => {
    const r = exec(
      "df -B1 --output=size /tmp | tail -1; dd if=/dev/zero of=/tmp/a bs=1M count=120 2>/dev/null; dd if=/dev/zero of=/var/tmp/b bs=1M count=120 2>&1 | grep -c 'No space'; rm -f /tmp/a /var/tmp/b",
      { limits: { memory: "256Mi" } },
    );
    expect(r.status).toBe(200);
    const [size, full] = out(r).trim().split("\n");
    expect(Number(size)).toBe(((256 + 64) * 1024 * 1024) / 2);
    expect(full).toBe("1"); // 240 MiB in /tmp + /var/tmp does not fit 160 MiB
  });
});

describe("through the CLI and a policy file (the one place the policy becomes a WorldSpec)", () => {
  const policy = (write: string[]) =>
    [
      "id: default",
      "name: fsview test",
      "fs:",
      '  read: ["/**"]',
      `  write: [${["$PROJECT/**", "/tmp/**", "$HOME/.cache/**", ...write].map((w) => JSON.stringify(w)).join(", ")}]`,
      "world:",
      "  isolate_network: false",
      "",
    ].join("\n");
  const cli = (line: string) => {
    const r = Bun.spawnSync(["setpriv", `--reuid=${u.uid}`, `--regid=${u.gid}`, "--init-groups", "--", ...hostArgv(), "-c", line], {
      cwd: proj,
      env: { HOME: u.home, PATH: "/usr/local/bin:/usr/bin:/bin", LANG: "C.UTF-8", SUBSTRATE_WORLD: "enabled", SUBSTRATE_WORLD_SOCKET: agent.socket },
      stdout: "pipe",
      stderr: "pipe",
    });
    return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
  };

  test("a new fs.write path in the policy is writable in the next command; secrets stay hidden", () => {
    asUser(`mkdir -p ~/.substrate/policies && cat > ~/.substrate/policies/default.yaml <<'Y'\n${policy([])}Y`);
    const before = cli("touch ~/.viacli/x 2>/dev/null || mkdir ~/.viacli 2>/dev/null || echo refused; echo $HOME; cat ~/.ssh/id_ed25519 2>/dev/null || echo hidden");
    expect(before.out.trim().split("\n")).toEqual(["refused", u.home, "hidden"]);
    expect(existsSync(join(u.home, ".viacli"))).toBe(false);
    asUser(`cat > ~/.substrate/policies/default.yaml <<'Y'\n${policy(["~/.viacli/**"])}Y`);
    const after = cli("echo via-policy > ~/.viacli/x && cat ~/.viacli/x");
    expect(after.out).toBe("via-policy\n");
    expect(readFileSync(join(u.home, ".viacli/x"), "utf8")).toBe("via-policy\n");
    expect(statSync(join(u.home, ".viacli")).uid).toBe(u.uid);
  });
});

describe("issue 18.7: defaults and bounded scratch", () => {
  test("no limits in the spec: memory 2Gi and pids 4096 (+ the world's own headroom); 3 GiB in /tmp is refused", () => {
    const r = exec(
      "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; df -B1 --output=size /tmp | tail -1; fallocate -l 3G /tmp/big 2>&1 | grep -c 'No space'; du -k /tmp/big 2>/dev/null | cut -f1; rm -f /tmp/big",
      { limits: {} },
    );
    expect(r.status).toBe(200);
    const [mem, pids, size, nospace, left] = out(r).trim().split("\n");
    expect(Number(mem)).toBe(2 * 1024 ** 3 + 64 * 1024 ** 2);
    expect(Number(pids)).toBe(4096 + 32);
    expect(Number(size)).toBe((2 * 1024 ** 3 + 64 * 1024 ** 2) / 2);
    expect(nospace).toBe("1");
    expect(left).toBe("0");
  });
});

describe("the root caller", () => {
  let rootProj: string;
  beforeAll(() => {
    rootProj = join(agent.dir, "rootproj");
    mkdirSync(join(rootProj, "secret"), { recursive: true });
    writeFileSync(join(rootProj, "secret/token"), "TOKEN");
  });
  afterAll(() => rmSync(rootProj, { recursive: true, force: true }));

  test("HOME is root's real home (read-only); a deny_read path in the view is hidden", async () => {
    const r = await agent.client.execute({
      cmd: 'echo "$HOME"; touch "$HOME/.fsview-probe" 2>&1 | grep -c Read-only; cat secret/token 2>&1; ls -A secret | wc -l',
      cwd: rootProj,
      agent_id: "fsview-root",
      world: { project_dir: rootProj, isolate_network: false, fs_view: { read: [], write: [], deny_read: ["$PROJECT/secret"], read_only: [] } },
    });
    const lines = Buffer.from(r.stdout_b64, "base64").toString().trim().split("\n");
    expect(lines[0]).toBe("/root");
    expect(lines[1]).toBe("1");
    expect(lines).toContain("0");
    expect(Buffer.from(r.stdout_b64, "base64").toString()).not.toContain("TOKEN");
    expect(existsSync("/root/.fsview-probe")).toBe(false);
  });
});
