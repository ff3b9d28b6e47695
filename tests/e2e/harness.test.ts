/**
 * Proves the limactl emulator behaves like Lima 2.x where the product can observe it (each
 * behaviour's Lima source is listed in docs/dev/lima_guest_harness.md): lifecycle and its error
 * cases, `list --json` (one object per line), the default user (macOS login name + uid, home
 * /home/<user>.guest + .linux link), the shared key, `shell`'s script (cd host cwd, exec
 * /bin/bash -l -c) and quoting, `copy` (rsync -a by default, scp on request), the ControlMaster
 * and its guestSocket forwards (dead after --reconnect, never re-created), no signal forwarding,
 * Broken while a hostagent starts or with a stale ha.pid, Running before ready, provision
 * scripts, version gates, validation, and a teardown that leaves nothing behind.
 * Needs root (nspawn, cgroups); the guest image is built once per machine (~60 s).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "ssh2";
import { createGuest, destroyGuest, ensureGuestImage, leftovers, LIMACTL, parseSshConfig, procAlive, TEST_PROFILE, type Guest } from "./harness/harness.ts";

const NAME = `emu${process.pid}`;
const MAC_USER = "macdev"; // the emulator's stand-in for the macOS login name (uid 501)
let g: Guest;
let scratch: string;
let shared: string;

beforeAll(() => {
  ensureGuestImage();
  scratch = mkdtempSync(join(tmpdir(), "substrate-harness-test-"));
  shared = join(scratch, "shared");
  mkdirSync(shared);
  g = createGuest(NAME, {
    profile:
      TEST_PROFILE.replace("mounts: []\n", "") +
      `mounts:\n  - location: ${JSON.stringify(shared)}\n    writable: true\n` +
      `portForwards:\n  - guestSocket: "{{.Home}}/echo.sock"\n    hostSocket: "{{.Dir}}/sock/echo.sock"\n` +
      `provision:\n  - mode: system\n    script: |\n      #!/bin/sh\n      echo provisioned > /etc/emu-provisioned\n      exit 3\n`,
  });
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

/** Spawns the emulator detached (own process group, like a caller that kills the group would). */
function spawnLimactl(args: string[], env: Record<string, string> = {}) {
  return Bun.spawn([LIMACTL, ...args], { env: { ...g.env, ...env }, stdin: "ignore", stdout: "pipe", stderr: "pipe", detached: true });
}
/** Processes whose process group is `pgid` (read from /proc/PID/stat). */
function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const st = readFileSync(`/proc/${e}/stat`, "utf8");
      const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
      if (Number(f[2]) === pgid && f[0] !== "Z") out.push(Number(e));
    } catch {}
  }
  return out;
}
const status = () => String(g.info().status);
/** Polls `list` until `pred` holds; returns every status seen (no wall-clock assertions). */
async function watchStatus(pred: (s: string, errors: string[]) => boolean, limit = 400): Promise<{ seen: string[]; errors: string[] }> {
  const seen: string[] = [];
  const errs: string[] = [];
  for (let k = 0; k < limit; k++) {
    const o = g.info() as { status: string; errors?: string[] };
    if (seen[seen.length - 1] !== o.status) seen.push(o.status);
    errs.push(...(o.errors ?? []));
    if (pred(o.status, o.errors ?? [])) return { seen, errors: errs };
    await Bun.sleep(50);
  }
  throw new Error(`status never matched; seen ${seen.join(" → ")}`);
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
      limaVersion: "2.2.0",
      config: { user: { name: MAC_USER, uid: 501, home: `/home/${MAC_USER}.guest`, shell: "/bin/bash" } },
    });
    for (const k of ["arch", "sshLocalPort", "hostAgentPID", "driverPID", "config"]) expect(o).toHaveProperty(k);
    expect(o.sshLocalPort).toBeGreaterThan(0);
    expect(g.limactl(["list", NAME, "--format", "json"]).stdout).toBe(r.stdout);
    expect(g.limactl(["list", NAME, "--format", "{{.Status}}"]).stdout).toBe("Running\n");
    expect(g.limactl(["--version"]).stdout).toBe("limactl version 2.2.0\n");
  }, 120_000);

  test("list of an unknown name: warning on stderr, exit 1", () => {
    const r = g.limactl(["list", "no-such-instance", "--json"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("No instance matching no-such-instance found");
  }, 120_000);

  test("creating twice fails with 'already exists'; validation: minimumLimaVersion, reserved mount points", () => {
    const f = join(scratch, "p.yaml");
    writeFileSync(f, "vmType: vz\n");
    const r = g.limactl(["start", "--tty=false", "--name", NAME, f]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("already exists");
    writeFileSync(f, 'vmType: vz\nminimumLimaVersion: "9.0.0"\n');
    const v = g.limactl(["start", "--tty=false", "--name", "toonew", f]);
    expect(v.code).toBe(1);
    expect(v.stderr).toContain("template requires Lima version `9.0.0`; this is only `2.2.0`");
    for (const mp of ["/", "/tmp", "/home", "/usr"]) {
      writeFileSync(f, `vmType: vz\nmounts:\n  - location: ${JSON.stringify(mp)}\n    writable: true\n`);
      const m = g.limactl(["start", "--tty=false", "--name", "reserved", f]);
      expect({ mp, code: m.code }).toEqual({ mp, code: 1 });
      expect(m.stderr).toContain("field `mounts[0].mountPoint` must not be a system path such as /etc or /usr");
    }
    writeFileSync(f, `vmType: vz\nmounts:\n  - location: ${JSON.stringify(scratch)}\n    mountPoint: "/home/${MAC_USER}.guest"\n`);
    expect(g.limactl(["start", "--tty=false", "--name", "reserved", f]).stderr).toContain("is the reserved internal home directory");
    expect(existsSync(join(g.limaHome, "toonew"))).toBe(false);
    expect(existsSync(join(g.limaHome, "reserved"))).toBe(false);
  }, 120_000);

  test("shell: Lima's quoting (each arg single-quoted) survives tricky arguments", () => {
    const args = ["it's", "$HOME", "a  b", '"dq"', "`id`", "semi;colon", "", "back\\slash", "*"];
    const out = g.sh("printf", "[%s]\\n", ...args);
    expect(out).toBe(args.map((a) => `[${a}]\n`).join(""));
    // Leading NAME=VALUE arguments become env assignments, quoted like Lima does.
    expect(g.sh("FOO=x y", "sh", "-c", 'echo "$FOO"')).toBe("x y\n");
  }, 120_000);

  test("the default user is the macOS login name + uid; home /home/<user>.guest with a .linux link; passwordless sudo", () => {
    expect(g.sh("id", "-un").trim()).toBe(MAC_USER);
    expect(g.sh("id", "-u").trim()).toBe("501");
    expect(g.sh("sh", "-c", "echo $HOME:$USER:$SHELL").trim()).toBe(`/home/${MAC_USER}.guest:${MAC_USER}:/bin/bash`);
    expect(g.sh("readlink", `/home/${MAC_USER}.linux`).trim()).toBe(`${MAC_USER}.guest`);
    expect(g.limactl(["shell", NAME, "id", "lima"]).code).toBe(1); // there is no `lima` user
  }, 120_000);

  test("shell: `cd <host cwd> || cd <host home> ; exec /bin/bash -l -c …`; cwd outside the mounts stays in the guest home", () => {
    // The test process's cwd is not mounted (and /root, the host home, is not either): home.
    expect(g.sh("pwd").trim()).toBe(`/home/${MAC_USER}.guest`);
    // From a mounted host directory, the guest shell starts there.
    const inShared = Bun.spawnSync([LIMACTL, "shell", NAME, "pwd"], { cwd: shared, env: g.env, stdout: "pipe", stderr: "pipe" });
    expect(inShared.stdout.toString()).toBe(`${shared}\n`);
    // A login shell (-l): /etc/profile ran (Debian puts /usr/local/games on the user's PATH there).
    expect(g.sh("sh", "-c", "echo $PATH")).toContain("/usr/local/games");
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

  test("boot: a failing provision script is recorded, boot-done is written anyway, start exits 0", () => {
    expect(g.sh("cat", "/etc/emu-provisioned")).toBe("provisioned\n");
    expect(g.limactl(["shell", NAME, "test", "-s", "/run/lima-boot-done"]).code).toBe(0);
    expect(readFileSync(join(g.dir, "serial.log"), "utf8")).toContain("WARNING: Failed to execute /var/lib/lima-emu/provision.system/00000000 (exit 3)");
  }, 120_000);

  test("copy (auto = rsync -a): a directory without -r; with -r its CONTENTS go into the destination", () => {
    const f = join(scratch, "tool.sh");
    writeFileSync(f, "#!/bin/sh\necho tool-ran\n", { mode: 0o755 });
    expect(g.limactl(["copy", f, `${NAME}:`]).code).toBe(0);
    expect(g.sh("./tool.sh")).toBe("tool-ran\n");
    expect(g.sh("stat", "-c", "%U %a", "tool.sh").trim()).toBe(`${MAC_USER} 755`);
    expect(g.limactl(["copy", f, `${NAME}:/tmp/renamed`]).code).toBe(0);
    expect(g.sh("cat", "/tmp/renamed")).toContain("tool-ran");
    writeFileSync(f, "#!/bin/sh\necho v2\n", { mode: 0o755 });
    expect(g.limactl(["copy", f, `${NAME}:/tmp/renamed`]).code).toBe(0);
    expect(g.sh("/tmp/renamed")).toBe("v2\n");
    // Several files into an existing directory (what the product does).
    g.sh("mkdir", "-p", "stage");
    expect(g.limactl(["copy", f, join(scratch, "p.yaml"), `${NAME}:stage/`]).code).toBe(0);
    expect(g.sh("ls", "stage").split("\n").filter(Boolean).sort()).toEqual(["p.yaml", "tool.sh"]);

    const d = join(scratch, "tree");
    mkdirSync(join(d, "sub"), { recursive: true });
    writeFileSync(join(d, "sub", "a.txt"), "A");
    expect(g.limactl(["copy", d, `${NAME}:`]).code).toBe(0); // -a implies -r
    expect(g.sh("cat", "tree/sub/a.txt")).toBe("A");
    g.sh("mkdir", "-p", "into");
    expect(g.limactl(["copy", "-r", d, `${NAME}:into`]).code).toBe(0);
    expect(g.sh("cat", "into/sub/a.txt")).toBe("A"); // rsync: contents, not into/tree
    expect(g.limactl(["shell", NAME, "test", "-e", "into/tree"]).code).toBe(1);
  }, 120_000);

  test("copy --backend=scp: directories need -r; an existing directory destination receives the source inside it", () => {
    const d = join(scratch, "tree");
    expect(g.limactl(["copy", "--backend=scp", d, `${NAME}:scp-tree`]).code).toBe(1);
    g.sh("mkdir", "-p", "scp-into");
    expect(g.limactl(["copy", "--backend=scp", "-r", d, `${NAME}:scp-into`]).code).toBe(0);
    expect(g.sh("cat", "scp-into/tree/sub/a.txt")).toBe("A");
  }, 120_000);

  test("copy: as the default user, a root-owned destination is refused (as on a real VM)", () => {
    const f = join(scratch, "x");
    writeFileSync(f, "x");
    const r = g.limactl(["copy", f, `${NAME}:/usr/local/bin/`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Permission denied/);
    expect(g.limactl(["shell", NAME, "test", "-e", "/usr/local/bin/x"]).code).toBe(1);
  }, 120_000);

  test("copy: guest → host (relative path under the user's home)", () => {
    g.sh("sh", "-c", "mkdir -p out/deep && echo hello > out/deep/h.txt && echo one > one.txt");
    const dst = join(scratch, "one-back.txt");
    expect(g.limactl(["copy", `${NAME}:one.txt`, dst]).code).toBe(0);
    expect(readFileSync(dst, "utf8")).toBe("one\n");
    const dd = join(scratch, "out-back");
    expect(g.limactl(["copy", "--backend=scp", `${NAME}:out`, dd]).code).toBe(1);
    expect(g.limactl(["copy", "-r", `${NAME}:out`, dd]).code).toBe(0);
    expect(readFileSync(join(dd, "deep", "h.txt"), "utf8")).toBe("hello\n");
    expect(g.limactl(["copy", `${NAME}:missing.txt`, dst]).code).toBe(1);
  }, 120_000);

  test("ssh2 connects with the instance's ssh.config: the shared key $LIMA_HOME/_config/user, the login user", async () => {
    const ep = parseSshConfig(readFileSync(join(g.dir, "ssh.config"), "utf8"));
    expect(ep.host).toBe("127.0.0.1");
    expect(ep.user).toBe(MAC_USER);
    expect(ep.identityFile).toBe(join(g.limaHome, "_config", "user"));
    expect(existsSync(join(g.dir, "id_ed25519"))).toBe(false);
    expect(ep.port).toBe(g.info().sshLocalPort as number);
    const r = await sshExec(g, "id -un; systemctl is-active ssh");
    expect(r).toEqual({ out: `${MAC_USER}\nactive\n`, code: 0 });
  }, 120_000);

  test("guestSocket forward: an ssh -O forward on the master; --reconnect kills it, the host socket stays and refuses, nothing re-creates it", async () => {
    const host = join(g.dir, "sock", "echo.sock");
    expect(statSync(join(g.dir, "sock")).mode & 0o777).toBe(0o750);
    // A guest echo server on {{.Home}}/echo.sock (guest template: the guest home).
    g.sh("sh", "-c", `nohup python3 -c 'import os,socket
p=os.path.expanduser("~/echo.sock")
s=socket.socket(socket.AF_UNIX); s.bind(p); s.listen(8)
while True:
    c,_=s.accept(); c.sendall(c.recv(100)); c.close()' >/dev/null 2>&1 &`);
    for (let k = 0; k < 100 && g.limactl(["shell", NAME, "test", "-S", "echo.sock"]).code !== 0; k++) await Bun.sleep(50);
    const echo = () => Bun.spawnSync(["socat", "-T5", "-", `UNIX-CONNECT:${host}`], { stdin: Buffer.from("ping"), stdout: "pipe", stderr: "pipe" });
    expect(echo().stdout.toString()).toBe("ping");
    const master = JSON.parse(readFileSync(join(g.dir, "emu.json"), "utf8")).master;
    expect(procAlive(master)).toBe(true);
    const rc = g.limactl(["shell", "--reconnect", NAME, "true"]);
    expect(rc.code).toBe(0);
    expect(rc.stderr).toContain("Exiting ssh session for the instance `" + NAME + "`");
    expect(procAlive(master)).toBe(false);
    expect(lstatSync(host).isSocket()).toBe(true); // the stub stays…
    const dead = echo();
    expect(dead.exitCode).not.toBe(0); // …and refuses
    expect(dead.stderr.toString()).toMatch(/Connection refused/);
    // Later shells run on a NEW master; the forward is still dead.
    expect(g.sh("echo", "new-master")).toBe("new-master\n");
    expect(echo().exitCode).not.toBe(0);
  }, 120_000);

  test("limactl shell does not forward SIGTERM: its child keeps running and holds the pipes", async () => {
    const p = spawnLimactl(["shell", NAME, "sleep", "300"]);
    for (let k = 0; k < 200 && !groupMembers(p.pid).some((pid) => readFileSync(`/proc/${pid}/cmdline`, "utf8").startsWith("sleep\0")); k++) await Bun.sleep(25);
    process.kill(p.pid, "SIGTERM");
    await p.exited;
    const left = groupMembers(p.pid);
    try {
      expect(left.length).toBeGreaterThan(0); // limactl is gone, its child is not
    } finally {
      process.kill(-p.pid, "SIGKILL");
    }
    for (let k = 0; k < 100 && groupMembers(p.pid).length; k++) await Bun.sleep(20);
    expect(groupMembers(p.pid)).toEqual([]);
  }, 120_000);

  test("stop → Stopped (second stop fails, delete of a running instance fails); start keeps the disk and logs the vz driver", () => {
    g.sh("sh", "-c", "echo persisted > keep.txt");
    const del = g.limactl(["delete", NAME]);
    expect(del.code).toBe(1);
    expect(del.stderr).toContain("expected status `Stopped`, got `Running`");
    const before = g.info();
    expect(g.limactl(["stop", NAME]).code).toBe(0);
    expect(status()).toBe("Stopped");
    expect(leftovers(g, { pids: [], port: before.sshLocalPort as number }).filter((l) => !l.startsWith("instance dir"))).toEqual([]);
    const again = g.limactl(["stop", NAME]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("expected status `Running`, got `Stopped` (maybe use `limactl stop -f`?)");
    const sh = g.limactl(["shell", NAME, "true"]);
    expect(sh.code).toBe(1);
    const st = g.limactl(["start", NAME]);
    expect(st.code).toBe(0);
    expect(st.stderr).toContain("Starting the instance `" + NAME + "` with internal VM driver `vz`");
    expect(status()).toBe("Running");
    expect(g.sh("cat", "keep.txt")).toBe("persisted\n");
    // start on a running instance is a warning, not an error (Lima's behaviour).
    const twice = g.limactl(["start", NAME]);
    expect(twice.code).toBe(0);
    expect(twice.stderr).toContain("already running");
  }, 120_000);

  test("Broken while a hostagent starts (ha.pid before ha.sock and the driver), then Running before sshd and boot-done", async () => {
    expect(g.limactl(["stop", NAME]).code).toBe(0);
    const p = spawnLimactl(["start", NAME], { LIMA_EMU_HA_DELAY_MS: "1500", LIMA_EMU_SSH_DELAY_MS: "2500" });
    try {
      const broken = await watchStatus((s) => s === "Broken");
      expect(broken.errors.join(" ")).toMatch(/ha\.sock|host agent is running but driver is not/);
      await watchStatus((s) => s === "Running");
      // Running, yet not ready: SSH does not answer / boot-done is not there yet.
      const early = g.limactl(["shell", NAME, "test", "-e", "/run/lima-boot-done"]);
      expect(early.code).not.toBe(0);
      expect(await p.exited).toBe(0);
      expect(g.limactl(["shell", NAME, "test", "-e", "/run/lima-boot-done"]).code).toBe(0);
    } finally {
      if (p.exitCode === null) process.kill(-p.pid, "SIGKILL");
    }
  }, 120_000);

  test("a stale ha.pid (a live pid that is no hostagent) reads Broken; start refuses; stop -f repairs without killing that pid", async () => {
    expect(g.limactl(["stop", NAME]).code).toBe(0);
    const foreign = Bun.spawn(["sleep", "300"], { stdout: "ignore", stderr: "ignore" });
    try {
      writeFileSync(join(g.dir, "ha.pid"), `${foreign.pid}\n`);
      expect(status()).toBe("Broken");
      const s = g.limactl(["start", NAME]);
      expect(s.code).toBe(1);
      expect(s.stderr).toContain("seems running (hint: remove");
      const f = g.limactl(["stop", "-f", NAME]);
      expect(f.code).toBe(0);
      expect(f.stderr).toContain(`Sending SIGKILL to the host agent process ${foreign.pid}`);
      expect(foreign.exitCode).toBe(null);
      expect(status()).toBe("Stopped");
      expect(g.limactl(["start", NAME]).code).toBe(0);
    } finally {
      foreign.kill("SIGKILL");
    }
  }, 120_000);

  test("version gates: --reconnect needs 1.1, copy --backend 2.0", () => {
    const old = (args: string[]) => Bun.spawnSync([LIMACTL, ...args], { env: { ...g.env, LIMA_EMU_VERSION: "1.0.3" }, stdout: "pipe", stderr: "pipe" });
    const r = old(["shell", "--reconnect", NAME, "true"]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toContain("unknown flag: --reconnect");
    expect(old(["copy", "--backend=scp", join(scratch, "x"), `${NAME}:`]).stderr.toString()).toContain("unknown flag: --backend");
    expect(old(["--version"]).stdout.toString()).toBe("limactl version 1.0.3\n");
  }, 120_000);

  test("stop -f kills the guest (PID 1) and start works again", () => {
    const st = JSON.parse(readFileSync(join(g.dir, "emu.json"), "utf8"));
    expect(g.limactl(["stop", "-f", NAME]).code).toBe(0);
    expect(procAlive(st.guest)).toBe(false);
    expect(procAlive(st.nspawn)).toBe(false);
    expect(procAlive(st.master)).toBe(false);
    expect(status()).toBe("Stopped");
    expect(g.limactl(["start", NAME]).code).toBe(0);
    expect(g.sh("echo", "back")).toBe("back\n");
  }, 120_000);

  test("delete -f leaves nothing behind (processes, cgroups, port, mounts, dir)", () => {
    const st = JSON.parse(readFileSync(join(g.dir, "emu.json"), "utf8"));
    const left = destroyGuest(g, { keepHome: true });
    expect(left).toEqual([]);
    for (const p of [st.hostagent, st.nspawn, st.guest, st.socat, st.master]) expect(procAlive(p)).toBe(false);
    expect(existsSync(g.dir)).toBe(false);
    expect(statSync(g.limaHome).isDirectory()).toBe(true);
    rmSync(g.limaHome, { recursive: true, force: true });
    g = undefined as unknown as Guest;
  }, 120_000);
});
