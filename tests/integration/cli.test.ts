/**
 * `substrate` as a user runs it (the compiled binary when built): -c through the world,
 * exit codes, host fallback, version, assets, usage errors.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { agentArgv, hostArgv, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

let agent: TestAgent;
let proj: string;
let home: string;

function substrate(args: string[], o: { cwd?: string; env?: Record<string, string>; stdin?: string; user?: string } = {}) {
  // runuser resets HOME to the passwd entry (nobody: /nonexistent); give the user a real one.
  const argv = o.user
    ? ["runuser", "-u", o.user, "--", "env", `HOME=${o.env?.HOME ?? home}`, ...hostArgv(), ...args]
    : [...hostArgv(), ...args];
  const p = Bun.spawnSync(argv, {
    cwd: o.cwd ?? proj,
    env: { PATH: process.env.PATH!, HOME: home, SUBSTRATE_WORLD_SOCKET: agent.socket, ...o.env },
    stdin: o.stdin === undefined ? "ignore" : Buffer.from(o.stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

beforeAll(async () => {
  agent = await startAgent();
  proj = tempProject();
  home = mkdtempSync(join(tmpdir(), "substrate-home-"));
});
afterAll(async () => {
  await agent.stop();
  rmSync(proj, { recursive: true, force: true });
  rmSync(home, { recursive: true, force: true });
});

describe("substrate -c", () => {
  test("runs in the world, streams stdout and stderr separately, exits with the command's code", () => {
    const r = substrate(["-c", "echo out; echo err >&2; hostname; exit 7"]);
    expect(r.code).toBe(7);
    expect(r.out).toMatch(/^out\nsubstrate-[0-9a-f]{8}\n$/);
    expect(r.err).toBe("err\n");
  });

  test("piped stdin reaches the command", () => {
    expect(substrate(["-c", "wc -c"], { stdin: "12345" }).out.trim()).toBe("5");
  });

  test("the project is the nearest git root: a subdir's command can write the whole project", () => {
    mkdirSync(join(proj, ".git"), { recursive: true });
    mkdirSync(join(proj, "a/b"), { recursive: true });
    const r = substrate(["-c", "pwd; echo up > ../../top.txt"], { cwd: join(proj, "a/b") });
    expect(r.code).toBe(0);
    expect(r.out).toBe(`${join(proj, "a/b")}\n`);
    expect(readFileSync(join(proj, "top.txt"), "utf8")).toBe("up\n");
  });

  test("--no-world and SUBSTRATE_WORLD=disabled run on the host", () => {
    expect(substrate(["--no-world", "-c", "hostname"]).out.trim()).toBe(hostname());
    expect(substrate(["-c", "hostname"], { env: { SUBSTRATE_WORLD: "disabled" } }).out.trim()).toBe(hostname());
  });

  test("world unavailable: one warning line then the host; --world makes it exit 3", () => {
    const nobodyHome = mkdtempSync(join(tmpdir(), "substrate-nobody-"));
    chmodSync(nobodyHome, 0o777);
    const env = { SUBSTRATE_WORLD_SOCKET: join(nobodyHome, "none.sock"), HOME: nobodyHome };
    const r = substrate(["-c", "echo ran; exit 4"], { user: "nobody", env, cwd: nobodyHome });
    expect(r.code).toBe(4);
    expect(r.out).toBe("ran\n");
    const lines = r.err.trim().split("\n");
    expect(lines.length).toBe(1);
    expect(lines[0]).toContain("world unavailable");
    expect(lines[0]).toContain("running on the host");
    const req = substrate(["--world", "-c", "echo should-not-run"], { user: "nobody", env, cwd: nobodyHome });
    expect(req.code).toBe(3);
    expect(req.out).toBe("");
    expect(req.err).toContain("world required but unavailable");
    rmSync(nobodyHome, { recursive: true, force: true });
  });

  test("as root with no agent answering, the embedded agent is started in the background", async () => {
    const dir = mkdtempSync(join(tmpdir(), "substrate-auto-"));
    const sock = join(dir, "auto.sock");
    const r = substrate(["-c", "echo auto"], { env: { SUBSTRATE_WORLD_SOCKET: sock } });
    const pid = Number(/pid (\d+)/.exec(r.err)?.[1] ?? 0);
    try {
      expect(r.code).toBe(0);
      expect(r.out).toBe("auto\n");
      expect(r.err).toMatch(/^substrate: started world agent \S+ on .*auto\.sock \(pid \d+\)\n$/);
      // Second run reuses it silently.
      const again = substrate(["-c", "echo again"], { env: { SUBSTRATE_WORLD_SOCKET: sock } });
      expect(again.err).toBe("");
      expect(readFileSync(`/proc/${pid}/cmdline`, "utf8")).toContain(sock);
    } finally {
      // the agent this test started goes, whatever failed above (a leak breaks later tests)
      if (pid > 0 && existsSync(`/proc/${pid}`)) {
        process.kill(pid, "SIGTERM");
        while (existsSync(`/proc/${pid}`)) await Bun.sleep(20);
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("usage and config errors", () => {
  test("unknown command / option → exit 2 with a hint, no stack trace", () => {
    for (const args of [["bogus"], ["--bogus"], ["-c"]]) {
      const r = substrate(args);
      expect(r.code).toBe(2);
      expect(r.err).toContain("substrate: ");
      expect(r.err).not.toContain("    at ");
    }
  });

  test("a broken config.toml → exit 2 naming the file and the field", () => {
    const h = mkdtempSync(join(tmpdir(), "substrate-cfg-"));
    mkdirSync(join(h, ".substrate"));
    writeFileSync(join(h, ".substrate/config.toml"), "[world]\nenabled = \"yes\"\n");
    const r = substrate(["-c", "true"], { env: { HOME: h } });
    expect(r.code).toBe(2);
    expect(r.err).toContain(join(h, ".substrate/config.toml"));
    expect(r.err).toContain("world.enabled");
    writeFileSync(join(h, ".substrate/config.toml"), "[world\n");
    expect(substrate(["-c", "true"], { env: { HOME: h } }).err).toContain("invalid TOML");
    rmSync(h, { recursive: true, force: true });
  });
});

describe("version and embedded assets", () => {
  test("--version and --version --json agree between host and agent", () => {
    const h = JSON.parse(substrate(["--version", "--json"]).out);
    const a = JSON.parse(Bun.spawnSync([...agentArgv(), "--version", "--json"]).stdout.toString());
    for (const k of ["version", "commit", "agent_hash"]) expect(h[k]).toBe(a[k]);
    expect(Object.keys(h).sort()).toEqual(["agent_hash", "commit", "target", "version"]);
    expect(substrate(["--version"]).out).toBe(`substrate ${h.version}+${h.commit}.${h.agent_hash}\n`);
  });

  test.skipIf(hostArgv().length !== 1)("the host binary embeds the agent of its arch and extracts a runnable copy", () => {
    const list = JSON.parse(substrate(["world", "assets", "list", "--json"]).out);
    expect(list.agent.target).toBe(`linux-${process.arch === "arm64" ? "arm64" : "x64"}`);
    expect(list.agent.compressed_size).toBeLessThan(list.agent.size);
    const dir = mkdtempSync(join(tmpdir(), "substrate-extract-"));
    const r = substrate(["world", "assets", "extract", dir]);
    expect(r.code).toBe(0);
    const v = Bun.spawnSync([join(dir, "substrate-world-agent"), "--version"]).stdout.toString().trim();
    expect(v).toBe(`substrate-world-agent ${list.agent.version}`);
    expect(list.host_version).toBe(list.agent.version);
    rmSync(dir, { recursive: true, force: true });
  });
});
