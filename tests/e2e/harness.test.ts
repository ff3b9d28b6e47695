/**
 * Proves the limactl emulator behaves like Lima where the product can observe it:
 * lifecycle and its error cases, `list --json` (one object per line), `shell` quoting and
 * exit codes, `copy` in both directions as the default user, a real sshd reachable with
 * ssh2 from the instance's ssh.config, and a teardown that leaves nothing behind.
 * Needs root (nspawn, cgroups); the guest image is built once per machine (~60 s).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "ssh2";
import { createGuest, destroyGuest, ensureGuestImage, leftovers, parseSshConfig, procAlive, type Guest } from "./harness/harness.ts";

const NAME = `emu${process.pid}`;
let g: Guest;
let scratch: string;

beforeAll(() => {
  ensureGuestImage();
  scratch = mkdtempSync(join(tmpdir(), "substrate-harness-test-"));
  g = createGuest(NAME);
}, 300_000);

afterAll(() => {
  if (g) destroyGuest(g);
  rmSync(scratch, { recursive: true, force: true });
}, 120_000);

function sshExec(g: Guest, cmd: string): Promise<{ out: string; code: number }> {
  const ep = parseSshConfig(readFileSync(join(g.dir, "ssh.config"), "utf8"));
  return new Promise((resolve, reject) => {
    const c = new Client();
    c.on("ready", () => {
      c.exec(cmd, (err, stream) => {
        if (err) return reject(err);
        let out = "";
        stream.on("data", (d: Buffer) => (out += d.toString()));
        stream.on("close", (code: number) => {
          c.end();
          resolve({ out, code });
        });
      });
    })
      .on("error", reject)
      .connect({ host: ep.host, port: ep.port, username: ep.user, privateKey: readFileSync(ep.identityFile), readyTimeout: 20_000 });
  });
}

describe("limactl emulator", () => {
  test("list --json: one object per line with Lima's fields; Running after start", () => {
    const r = g.limactl(["list", NAME, "--json"]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines).toHaveLength(1);
    const o = JSON.parse(lines[0]!);
    expect(o).toMatchObject({
      name: NAME,
      hostname: `lima-${NAME}`,
      status: "Running",
      dir: g.dir,
      vmType: "vz",
      cpus: 2,
      memory: 2 * 1024 ** 3,
      disk: 8 * 1024 ** 3,
      sshAddress: "127.0.0.1",
      sshConfigFile: join(g.dir, "ssh.config"),
    });
    for (const k of ["arch", "sshLocalPort", "hostAgentPID", "config", "limaVersion"]) expect(o).toHaveProperty(k);
    expect(o.sshLocalPort).toBeGreaterThan(0);
    expect(g.limactl(["list", NAME, "--format", "json"]).stdout).toBe(r.stdout);
    expect(g.limactl(["list", NAME, "--format", "{{.Status}}"]).stdout).toBe("Running\n");
  }, 120_000);

  test("list of an unknown name: warning on stderr, exit 1", () => {
    const r = g.limactl(["list", "no-such-instance", "--json"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("No instance matching no-such-instance found");
  }, 120_000);

  test("creating twice fails with 'already exists'", () => {
    const f = join(scratch, "p.yaml");
    writeFileSync(f, "vmType: vz\n");
    const r = g.limactl(["start", "--tty=false", "--name", NAME, f]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("already exists");
  }, 120_000);

  test("shell: Lima's quoting (each arg single-quoted) survives tricky arguments", () => {
    const args = ["it's", "$HOME", "a  b", '"dq"', "`id`", "semi;colon", "", "back\\slash", "*"];
    const out = g.sh("printf", "[%s]\\n", ...args);
    expect(out).toBe(args.map((a) => `[${a}]\n`).join(""));
    // Leading NAME=VALUE arguments become env assignments, quoted like Lima does.
    expect(g.sh("FOO=x y", "sh", "-c", 'echo "$FOO"')).toBe("x y\n");
  }, 120_000);

  test("shell: runs as the default user in its home, login environment, exit code propagates", () => {
    expect(g.sh("id", "-un").trim()).toBe("lima");
    expect(g.sh("pwd").trim()).toBe("/home/lima.linux");
    expect(g.sh("sh", "-c", "echo $HOME:$USER").trim()).toBe("/home/lima.linux:lima");
    expect(g.sh("sudo", "-n", "id", "-u").trim()).toBe("0");
    const r = g.limactl(["shell", NAME, "sh", "-c", "echo err >&2; exit 7"]);
    expect(r.code).toBe(7);
    expect(r.stderr).toBe("err\n");
    expect(g.limactl(["shell", "--workdir", "/tmp", NAME, "pwd"]).stdout).toBe("/tmp\n");
    expect(g.limactl(["shell", "--workdir", "/nonexistent", NAME, "pwd"]).code).toBe(1);
  }, 120_000);

  test("shell: the guest runs systemd as PID 1 with a private network", () => {
    expect(g.sh("cat", "/proc/1/comm").trim()).toBe("systemd");
    expect(g.sh("systemctl", "is-system-running").trim()).toMatch(/^(running|degraded)$/);
    expect(g.sh("hostname").trim()).toBe(`lima-${NAME}`);
    const links = g.sh("ip", "-o", "link", "show").trim().split("\n");
    expect(links.map((l) => l.split(":")[1]!.trim())).toEqual(["lo"]);
  }, 120_000);

  test("copy: host → guest (file, rename, dir with -r) as the default user", () => {
    const f = join(scratch, "tool.sh");
    writeFileSync(f, "#!/bin/sh\necho tool-ran\n", { mode: 0o755 });
    expect(g.limactl(["copy", f, `${NAME}:`]).code).toBe(0);
    expect(g.sh("./tool.sh")).toBe("tool-ran\n");
    expect(g.sh("stat", "-c", "%U %a", "tool.sh").trim()).toBe("lima 755");
    expect(g.limactl(["copy", f, `${NAME}:/tmp/renamed`]).code).toBe(0);
    expect(g.sh("cat", "/tmp/renamed")).toContain("tool-ran");
    // Overwriting an existing file replaces its content.
    writeFileSync(f, "#!/bin/sh\necho v2\n", { mode: 0o755 });
    expect(g.limactl(["copy", f, `${NAME}:/tmp/renamed`]).code).toBe(0);
    expect(g.sh("/tmp/renamed")).toBe("v2\n");

    const d = join(scratch, "tree");
    mkdirSync(join(d, "sub"), { recursive: true });
    writeFileSync(join(d, "sub", "a.txt"), "A");
    const noR = g.limactl(["copy", d, `${NAME}:`]);
    expect(noR.code).toBe(1);
    expect(g.limactl(["copy", "-r", d, `${NAME}:`]).code).toBe(0);
    expect(g.sh("cat", "tree/sub/a.txt")).toBe("A");
  }, 120_000);

  test("copy: as the default user, a root-owned destination is refused (as on a real VM)", () => {
    const f = join(scratch, "x");
    writeFileSync(f, "x");
    const r = g.limactl(["copy", f, `${NAME}:/usr/local/bin/`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Permission denied/);
    expect(g.limactl(["shell", NAME, "test", "-e", "/usr/local/bin/x"]).code).toBe(1);
  }, 120_000);

  test("copy: guest → host (relative path under the user's home, dir with -r)", () => {
    g.sh("sh", "-c", "mkdir -p out/deep && echo hello > out/deep/h.txt && echo one > one.txt");
    const dst = join(scratch, "one-back.txt");
    expect(g.limactl(["copy", `${NAME}:one.txt`, dst]).code).toBe(0);
    expect(readFileSync(dst, "utf8")).toBe("one\n");
    const dd = join(scratch, "out-back");
    expect(g.limactl(["copy", `${NAME}:out`, dd]).code).toBe(1);
    expect(g.limactl(["copy", "-r", `${NAME}:out`, dd]).code).toBe(0);
    expect(readFileSync(join(dd, "deep", "h.txt"), "utf8")).toBe("hello\n");
    expect(g.limactl(["copy", `${NAME}:missing.txt`, dst]).code).toBe(1);
  }, 120_000);

  test("ssh2 connects with the instance's ssh.config and runs a command", async () => {
    const ep = parseSshConfig(readFileSync(join(g.dir, "ssh.config"), "utf8"));
    expect(ep.host).toBe("127.0.0.1");
    expect(ep.user).toBe("lima");
    expect(ep.port).toBe(g.info().sshLocalPort as number);
    const r = await sshExec(g, "id -un; systemctl is-active ssh");
    expect(r).toEqual({ out: "lima\nactive\n", code: 0 });
  }, 120_000);

  test("stop → Stopped (second stop fails, delete of a running instance fails); start keeps the disk", () => {
    g.sh("sh", "-c", "echo persisted > keep.txt");
    const del = g.limactl(["delete", NAME]);
    expect(del.code).toBe(1);
    expect(del.stderr).toContain("is running");
    const before = g.info();
    expect(g.limactl(["stop", NAME]).code).toBe(0);
    expect(g.info().status).toBe("Stopped");
    expect(leftovers(g, { pids: [], port: before.sshLocalPort as number }).filter((l) => !l.startsWith("instance dir"))).toEqual([]);
    const again = g.limactl(["stop", NAME]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('expected status "Running"');
    const sh = g.limactl(["shell", NAME, "true"]);
    expect(sh.code).toBe(1);
    expect(g.limactl(["start", NAME]).code).toBe(0);
    expect(g.info().status).toBe("Running");
    expect(g.sh("cat", "keep.txt")).toBe("persisted\n");
    // start on a running instance is a warning, not an error (Lima's behaviour).
    const twice = g.limactl(["start", NAME]);
    expect(twice.code).toBe(0);
    expect(twice.stderr).toContain("already running");
  }, 120_000);

  test("stop -f kills the guest (PID 1) and start works again", () => {
    const st = JSON.parse(readFileSync(join(g.dir, "emu.json"), "utf8"));
    expect(g.limactl(["stop", "-f", NAME]).code).toBe(0);
    expect(procAlive(st.guest)).toBe(false);
    expect(procAlive(st.nspawn)).toBe(false);
    expect(g.info().status).toBe("Stopped");
    expect(g.limactl(["start", NAME]).code).toBe(0);
    expect(g.sh("echo", "back")).toBe("back\n");
  }, 120_000);

  test("delete -f leaves nothing behind (processes, cgroups, port, mounts, dir)", () => {
    const st = JSON.parse(readFileSync(join(g.dir, "emu.json"), "utf8"));
    const left = destroyGuest(g, { keepHome: true });
    expect(left).toEqual([]);
    for (const p of [st.nspawn, st.guest, st.socat]) expect(procAlive(p)).toBe(false);
    expect(existsSync(g.dir)).toBe(false);
    expect(statSync(g.limaHome).isDirectory()).toBe(true);
    rmSync(g.limaHome, { recursive: true, force: true });
    g = undefined as unknown as Guest;
  }, 120_000);
});
