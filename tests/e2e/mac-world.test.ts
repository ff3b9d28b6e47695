/**
 * The macOS world path, end to end, on Linux: the compiled host binary runs the SAME mac
 * backend code (hidden test switch SUBSTRATE_TEST_LIMA_BACKEND=1) against the limactl
 * emulator (tests/e2e/harness): `world warm` creates the VM, pushes the embedded agent +
 * units with `limactl copy`, provisions, validates; `substrate -c` runs in the guest's
 * world through Lima's own socket forward (or an ssh2 forward of /run/substrate.sock). Each kind
 * of damage (agent version, unit, socket owner/group, stopped socket, missing binary or tool,
 * broken VM) is detected and repaired. The emulator follows Lima 2.x's source (issue 19): the
 * forward dies with Lima's SSH master, limactl forwards no signal, Broken during start-up and
 * Running before ready, the `vz` start line, version floors, reserved mounts.
 * Needs root; the guest image is built once per machine.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { adoptGuest, destroyGuest, ensureGuestImage, harnessEnv, LIMACTL, type Guest } from "./harness/harness.ts";
import { Limactl, LimactlError } from "../../src/sys/limactl.ts";

const ROOT = resolve(import.meta.dir, "../..");
const T = 240_000;
/** The emulator's stand-in for the macOS login name (Lima's default user). */
const USER = "macdev";
let work: string;
let bin: string;
let project: string;
let env: Record<string, string>;
let g: Guest;
/** macOS's `sysctl -n kern.hv_support` for the doctor (the VM boundary itself is emulated). */
let shim: string;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}
function substrate(args: string[], extra: Record<string, string> = {}, stdin?: string, cwd: string = project): Run {
  const r = Bun.spawnSync([bin, ...args], { cwd, env: { ...env, ...extra }, stdout: "pipe", stderr: "pipe", stdin: stdin === undefined ? "ignore" : Buffer.from(stdin) });
  return { code: r.exitCode ?? 1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}
function warm(extra: Record<string, string> = {}): { code: number; report: any; stderr: string } {
  const r = substrate(["world", "warm", "--json"], extra);
  let report: any = null;
  try {
    report = JSON.parse(r.stdout.trim().split("\n").pop() ?? "");
  } catch {}
  if (r.code !== 0 || !report?.ok) console.error(`warm failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  return { code: r.code, report, stderr: r.stderr };
}
const sudo = (...cmd: string[]) => g.sh("sudo", ...cmd);
/** Lima's image cache entry for a URL (downloader: by-url-sha256/<sha256(url)>/data). */
const cached = (url: string) => existsSync(join(env.XDG_CACHE_HOME!, "lima/download/by-url-sha256", new Bun.CryptoHasher("sha256").update(url).digest("hex"), "data"));
const ARCH_IMG = process.arch === "arm64" ? "arm64" : "amd64";
const DATED = `https://cloud-images.ubuntu.com/releases/noble/release-20260705/ubuntu-24.04-server-cloudimg-${ARCH_IMG}.img`;
const FALLBACK = `https://cloud-images.ubuntu.com/releases/noble/release/ubuntu-24.04-server-cloudimg-${ARCH_IMG}.img`;

/** A socket file nobody listens on (what a crashed forwarder leaves): socat, SIGKILLed. */
async function staleSocket(path: string): Promise<void> {
  const p = Bun.spawn(["socat", `UNIX-LISTEN:${path}`, "/dev/null"], { stdout: "ignore", stderr: "ignore" });
  for (let i = 0; i < 100 && !existsSync(path); i++) await Bun.sleep(20);
  p.kill("SIGKILL");
  await p.exited;
  if (!existsSync(path)) throw new Error(`socat did not create ${path}`);
}

beforeAll(() => {
  ensureGuestImage();
  // A private copy of the host binary: a rebuild of dist/ during the run must not change
  // the embedded agent version under our feet. A copy taken while another build was
  // writing dist/ is caught by extracting its embedded agent, and retried after a build.
  work = mkdtempSync(join(tmpdir(), "substrate-macworld-"));
  bin = join(work, "substrate");
  for (let attempt = 0; ; attempt++) {
    {
      // Incremental: a no-op when dist/ is current (its stamp covers guest-assets/ too).
      const b = Bun.spawnSync([process.execPath, "scripts/build.ts", "--native"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
      if (b.exitCode !== 0 && attempt >= 2) throw new Error(`build failed: ${b.stderr}`);
    }
    try {
      copyFileSync(join(ROOT, "dist/substrate-linux-x64"), bin);
    } catch {}
    Bun.spawnSync(["chmod", "755", bin]);
    const x = Bun.spawnSync([bin, "world", "assets", "extract", join(work, "extract")], { stdout: "pipe", stderr: "pipe" });
    rmSync(join(work, "extract"), { recursive: true, force: true });
    if (x.exitCode === 0) break;
    if (attempt >= 2) throw new Error(`dist/substrate-linux-x64 is unusable: ${x.stderr}`);
    Bun.sleepSync(2000);
  }
  shim = join(work, "shim");
  mkdirSync(shim);
  writeFileSync(join(shim, "sysctl"), '#!/bin/sh\n[ "$1 $2" = "-n kern.hv_support" ] && { echo 1; exit 0; }\nexit 1\n', { mode: 0o755 });
  project = join(work, "project");
  Bun.spawnSync(["mkdir", "-p", project, join(work, "lima"), join(work, "home")]);
  // On a Mac the project belongs to the login user, whose uid Lima gives the guest user (501
  // here, the emulator's stand-in): the world agent checks the caller can write it.
  Bun.spawnSync(["chown", "501:501", project]);
  env = {
    ...harnessEnv(join(work, "lima")),
    SUBSTRATE_HOME: join(work, "home"),
    SUBSTRATE_TEST_LIMA_BACKEND: "1",
  };
  delete env.SUBSTRATE_WORLD_AGENT_BIN;
  delete env.SUBSTRATE_WORLD_SOCKET;
  delete env.SUBSTRATE_WORLD;
  g = adoptGuest("substrate", join(work, "lima"));
}, 300_000);

afterAll(() => {
  const left = g ? destroyGuest(g, { keepHome: true }) : [];
  rmSync(work, { recursive: true, force: true });
  if (left.length) throw new Error(`left behind: ${left.join("; ")}`);
}, 120_000);

describe("substrate world warm + substrate -c through the Lima backend (emulated VM)", () => {
  test("fresh warm: refuses a project Lima would reject before touching Lima (cwd /, an ancestor of $HOME)", () => {
    const empty = join(work, "lima-empty");
    mkdirSync(empty, { recursive: true });
    const e = { LIMA_HOME: empty, XDG_CACHE_HOME: join(empty, "_cache") };
    const root = substrate(["world", "warm"], e, undefined, "/");
    expect(root.code).toBe(2);
    expect(root.stdout + root.stderr).toContain("the project directory / cannot be mounted into the Lima VM");
    const home = join(work, "users", "alice");
    mkdirSync(home, { recursive: true });
    const anc = substrate(["world", "warm", "--project", join(work, "users")], { ...e, HOME: home });
    expect(anc.code).toBe(2);
    expect(anc.stdout + anc.stderr).toContain("contains your home directory");
    expect(readdirSync(empty).filter((n) => !n.startsWith("_"))).toEqual([]); // no instance, not even a half-created one
  }, T);

  test("fresh: the first substrate -c creates the VM (download progress shown, then the boot), provisions; the socket is the Lima user's", () => {
    const r = substrate(["-c", "echo first"], { LIMA_EMU_DOWNLOAD_MS: "3000" });
    if (r.code !== 0) console.error(r.stdout + r.stderr);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("first\n");
    expect(r.stderr).toContain("substrate: downloading the Ubuntu 24.04 cloud image");
    expect(r.stderr).toMatch(/substrate: downloading the image: \d+ MiB so far/);
    expect(r.stderr).toContain("substrate: image ready; booting the VM");
    expect(r.stderr).toMatch(/substrate: world VM: created, pushed_agent, pushed_units, provisioned/);
    expect(r.stderr).not.toContain("reconnected");
    // The pinned, dated image was the one fetched (Lima tries `images:` in order).
    expect(cached(DATED)).toBe(true);
    expect(cached(FALLBACK)).toBe(false);
    const st = substrate(["world", "status", "--json"]);
    const report = JSON.parse(st.stdout);
    expect(report.ok).toBe(true);
    expect(report.layout.problems).toEqual([]);
    expect(report.layout.boot_done).toBe(true);
    expect(report.layout.agent_version).toBe(report.expected_agent_version);
    // Lima's default user is the Mac login name; the socket is that user's, group substrate, 0660.
    expect(g.sh("id", "-un").trim()).toBe(USER);
    expect(g.sh("stat", "-c", "%U:%G %a", "/run/substrate.sock").trim()).toBe(`${USER}:substrate 660`);
    expect(g.sh("systemctl", "is-enabled", "substrate-world-agent.socket").trim()).toBe("enabled");
    // The units in the guest are byte-identical to guest-assets/.
    for (const u of ["substrate-world-agent.socket", "substrate-world-agent.service"])
      expect(g.sh("cat", `/etc/systemd/system/${u}`)).toBe(readFileSync(join(ROOT, "guest-assets", u), "utf8"));
    const state = JSON.parse(readFileSync(join(work, "home/lima/state.json"), "utf8"));
    expect(state.phase).toBe("ready");
  }, T);

  test("after a fresh warm, substrate -c uses Lima's own forward with no warning (warm never kills Lima's SSH master)", () => {
    const r = substrate(["-c", "echo hi; cat /etc/hostname; echo made > from-world.txt"], { SUBSTRATE_DEBUG: "1" });
    expect(r.stderr).not.toContain("running on the host");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("hi\nlima-substrate\n");
    expect(r.stderr).toContain(`using lima-native at ${join(g.dir, "sock", "substrate.sock")}`);
    expect(r.stderr).not.toContain("warning");
    // The project is mounted writable into the VM (virtiofs on a Mac, a bind here).
    expect(readFileSync(join(project, "from-world.txt"), "utf8")).toBe("made\n");
    expect(substrate(["-c", "exit 7"]).code).toBe(7);
  }, T);

  test("a world's fs.write cache under the guest home is writable and lands in the guest home (the unit's ProtectHome is off in the drop-in)", () => {
    // Can fail: with the shipped ProtectHome=read-only and no drop-in override, the bind of
    // ~/.cache was refused ("fs view: …" warning) and the write failed with EROFS.
    const r = substrate(["-c", "mkdir -p ~/.cache/substrate-e2e && echo cached > ~/.cache/substrate-e2e/probe && cat ~/.cache/substrate-e2e/probe"]);
    expect(r.stderr).not.toContain("fs view:");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("cached\n");
    const home = g.sh("sh", "-c", "getent passwd $(id -un) | cut -d: -f6").trim();
    expect(g.sh("cat", `${home}/.cache/substrate-e2e/probe`)).toBe("cached\n");
    expect(g.sh("cat", "/etc/systemd/system/substrate-world-agent.service.d/50-writable-mounts.conf")).toContain("ProtectHome=no");
  }, T);

  test("re-running warm on a healthy VM changes nothing", () => {
    const { code, report } = warm();
    expect(code).toBe(0);
    expect(report.actions).toEqual([]);
    const st = substrate(["world", "status", "--json"]);
    expect(st.code).toBe(0);
    expect(JSON.parse(st.stdout).ok).toBe(true);
  }, T);

  test("another agent version in the guest is detected and replaced", () => {
    const other = join(work, "agent-other");
    const b = Bun.spawnSync(
      [process.execPath, "build", "--compile", "--minify", "--format=esm", "--target=bun-linux-x64", "--define", '__SUBSTRATE_COMMIT__="e2eother"', "--define", '__SUBSTRATE_AGENT_HASH__="e2eother"', "--define", '__SUBSTRATE_TARGET__="linux-x64"', "--outfile", other, "agent/main.ts"],
      { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
    );
    expect(b.exitCode).toBe(0);
    expect(g.limactl(["copy", other, "substrate:/tmp/agent-other"]).code).toBe(0);
    sudo("sh", "-c", "install -m755 /tmp/agent-other /usr/local/bin/substrate-world-agent && systemctl restart substrate-world-agent.service");
    expect(g.sh("/usr/local/bin/substrate-world-agent", "--version")).toContain("e2eother");
    const { report } = warm();
    expect(report.ok).toBe(true);
    expect(report.actions).toContain("pushed_agent");
    expect(g.sh("/usr/local/bin/substrate-world-agent", "--version")).not.toContain("e2eother");
    // The agent answering the socket is the new one (restarted by the provision step).
    const caps = JSON.parse(g.sh("curl", "-sS", "--unix-socket", "/run/substrate.sock", "http://localhost/v1/capabilities"));
    expect(`${caps.agent.version}+${caps.agent.commit}.${caps.agent.agent_hash}`).toBe(report.expected_agent_version);
  }, T);

  const damages: [string, string, string][] = [
    ["a deleted unit", "rm /etc/systemd/system/substrate-world-agent.service && systemctl daemon-reload", "pushed_units"],
    ["a wrong socket group", "chgrp root /run/substrate.sock", "repaired_socket"],
    ["a removed socket-owner drop-in", "rm /etc/systemd/system/substrate-world-agent.socket.d/50-lima-user.conf && systemctl daemon-reload && systemctl restart substrate-world-agent.socket", "repaired_socket"],
    ["a stopped socket", "systemctl stop substrate-world-agent.service substrate-world-agent.socket", "provisioned"],
    ["a removed binary", "rm /usr/local/bin/substrate-world-agent", "pushed_agent"],
    ["a user dropped from the group", `gpasswd -d ${USER} substrate`, "provisioned"],
  ];
  for (const [what, damage, action] of damages) {
    test(`${what} is detected and repaired`, () => {
      sudo("sh", "-c", damage);
      const st = substrate(["world", "status", "--json"]);
      expect(st.code).toBe(3);
      expect(JSON.parse(st.stdout).layout.problems.length).toBeGreaterThan(0);
      const { report } = warm();
      expect(report.ok).toBe(true);
      expect(report.actions).toContain(action);
      expect(report.layout.problems).toEqual([]);
      expect(substrate(["-c", "echo ok"]).stdout).toBe("ok\n");
    }, T);
  }

  test("a tool the world needs is missing (failed first-boot install): reported, the repair is tried, a clear error when it cannot install", () => {
    sudo("mv", "/usr/sbin/nft", "/usr/sbin/nft.off");
    try {
      const st = substrate(["world", "status", "--json"]);
      expect(st.code).toBe(3);
      expect(JSON.parse(st.stdout).layout.problems.join("\n")).toContain("lacks tools the world needs: nft");
      // The harness guest has no network: apt-get fails, warm says so (never "ready").
      const w = substrate(["world", "warm"]);
      expect(w.code).toBe(3);
      expect(w.stdout + w.stderr).toContain("could not be installed: nftables");
      expect(w.stdout + w.stderr).toContain("sudo apt-get install -y nftables");
    } finally {
      sudo("mv", "/usr/sbin/nft.off", "/usr/sbin/nft");
    }
    const { report } = warm();
    expect(report.ok).toBe(true);
    expect(report.layout.missing_tools).toEqual([]);
  }, T);

  test("the pinned DNS keeps the guest's own upstream (Lima's host DNS), never a public resolver", () => {
    // What Ubuntu's systemd-resolved lists when Lima set the nameserver (192.168.5.3); the
    // harness guest has no resolved and no network, so the list is written by hand here.
    sudo("sh", "-c", "mkdir -p /run/systemd/resolve && printf 'nameserver 192.168.5.3\\nnameserver 127.0.0.53\\n' > /run/systemd/resolve/resolv.conf && rm -f /usr/local/bin/substrate-world-agent");
    try {
      expect(warm().report.ok).toBe(true);
      expect(g.sh("cat", "/etc/substrate/dns-upstream").trim().split("\n").pop()).toBe("192.168.5.3");
      expect(g.limactl(["shell", "substrate", "grep", "-r", "1.1.1.1", "/etc/substrate"]).code).toBe(1);
    } finally {
      sudo("rm", "-rf", "/run/systemd/resolve");
    }
  }, T);

  test("stop + warm keeps the layout (only a start, no push)", () => {
    const s = substrate(["world", "stop", "--json"]);
    expect(s.code).toBe(0);
    expect(JSON.parse(s.stdout).vm_status).toBe("Stopped");
    expect(substrate(["world", "status", "--json"]).code).toBe(3);
    const { report } = warm();
    expect(report.actions).toEqual(["started"]);
    expect(substrate(["-c", "echo back"]).stdout).toBe("back\n");
  }, T);

  test("a user outside the substrate group is refused by the socket", () => {
    sudo("sh", "-c", "id outsider >/dev/null 2>&1 || useradd -m outsider");
    const r = g.limactl(["shell", "substrate", "sudo", "-u", "outsider", "curl", "-sS", "--unix-socket", "/run/substrate.sock", "http://localhost/v1/capabilities"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Permission denied|Couldn't connect/);
    expect(g.sh("curl", "-sS", "--unix-socket", "/run/substrate.sock", "http://localhost/v1/capabilities")).toContain('"api_version":"v1"');
  }, T);

  test("ssh2 forwards: unix socket (0700 dir), TCP fallback; nothing left behind", async () => {
    const sockDir = join(work, "home/sock");
    const uds = substrate(["-c", "echo via-uds"], { SUBSTRATE_TRANSPORT_SKIP: "lima-native", SUBSTRATE_DEBUG: "1" });
    expect(uds.code).toBe(0);
    expect(uds.stdout).toBe("via-uds\n");
    expect(uds.stderr).toContain(`using ssh-uds at ${join(sockDir, "agent.sock")}`);
    expect(statSync(sockDir).mode & 0o777).toBe(0o700);
    expect(readdirSync(sockDir)).toEqual([]);
    const tcp = substrate(["-c", "echo via-tcp"], { SUBSTRATE_TRANSPORT_SKIP: "lima-native,ssh-uds", SUBSTRATE_DEBUG: "1" });
    expect(tcp.code).toBe(0);
    expect(tcp.stdout).toBe("via-tcp\n");
    expect(tcp.stderr).toMatch(/using ssh-tcp at 127\.0\.0\.1:\d+/);
    // Piped stdin goes through /v1/stream (WebSocket): over every transport.
    for (const skip of ["", "lima-native", "lima-native,ssh-uds"]) {
      const p = substrate(["-c", "tr a-z A-Z"], { SUBSTRATE_TRANSPORT_SKIP: skip }, "piped stdin\n");
      expect({ skip, code: p.code, out: p.stdout }).toEqual({ skip, code: 0, out: "PIPED STDIN\n" });
    }
    const port = Number(/using ssh-tcp at 127\.0\.0\.1:(\d+)/.exec(tcp.stderr)![1]);
    const hex = port.toString(16).toUpperCase().padStart(4, "0");
    const listening = readFileSync("/proc/net/tcp", "utf8").split("\n").some((l) => l.includes(`:${hex} `) && l.split(/\s+/)[4] === "0A");
    expect(listening).toBe(false);
    // A stale socket file from a crashed run is replaced, not an error.
    Bun.spawnSync(["mkdir", "-p", sockDir]);
    await staleSocket(join(sockDir, "agent.sock"));
    expect(existsSync(join(sockDir, "agent.sock"))).toBe(true);
    const again = substrate(["-c", "echo stale-ok"], { SUBSTRATE_TRANSPORT_SKIP: "lima-native" });
    expect(again.stdout).toBe("stale-ok\n");
    expect(readdirSync(sockDir)).toEqual([]);
  }, T);

  test("Lima's SSH master dies (host sleep): the refusing forward is repaired quietly by the next substrate -c", () => {
    const native = join(g.dir, "sock", "substrate.sock");
    expect(Bun.spawnSync(["ssh", "-F", join(g.dir, "ssh.config"), "-O", "exit", "lima-substrate"], { stdout: "pipe", stderr: "pipe" }).exitCode).toBe(0);
    expect(lstatSync(native).isSocket()).toBe(true); // the stub stays and refuses
    const r = substrate(["-c", "echo after-sleep"], { SUBSTRATE_DEBUG: "1" });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("after-sleep\n");
    expect(r.stderr).not.toContain("warning");
    expect(r.stderr).toContain("forward was dead, re-registered");
    const again = substrate(["-c", "echo native-again"], { SUBSTRATE_DEBUG: "1" });
    expect(again.stderr).toContain(`using lima-native at ${native}`);
    expect(again.stderr).not.toMatch(/warning|re-registered/);
  }, T);

  test("`limactl shell --reconnect` kills the forward; warm re-registers it (repaired_forward)", () => {
    expect(g.limactl(["shell", "--reconnect", "substrate", "true"]).code).toBe(0);
    const { report } = warm();
    expect(report.ok).toBe(true);
    expect(report.actions).toEqual(["repaired_forward"]);
    const r = substrate(["-c", "echo native"], { SUBSTRATE_DEBUG: "1" });
    expect(r.stderr).toContain("using lima-native at");
    expect(r.stderr).not.toContain("warning");
  }, T);

  test("a limactl timeout bounds the call: the whole process group dies, the pipes are not waited for", async () => {
    const l = new Limactl({ env });
    let err: unknown = null;
    try {
      await l.shell("substrate", ["sleep", "297"], { timeoutMs: 1500 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LimactlError);
    expect((err as Error).message).toContain("timed out after 1500 ms");
    // The guest-side child (nsenter … sleep, in limactl's process group) is gone too.
    for (let k = 0; k < 100 && g.limactl(["shell", "substrate", "pgrep", "-f", "sleep 297"]).code === 0; k++) await Bun.sleep(50);
    expect(g.limactl(["shell", "substrate", "pgrep", "-f", "sleep 297"]).code).toBe(1);
  }, T);

  test("Broken while someone else's `limactl start` brings up the hostagent: warm waits, never deletes", async () => {
    g.sh("sh", "-c", "echo keep > ~/marker");
    expect(g.limactl(["stop", "substrate"]).code).toBe(0);
    const bg = Bun.spawn([LIMACTL, "start", "substrate"], { env: { ...env, LIMA_EMU_HA_DELAY_MS: "3000", LIMA_EMU_SSH_DELAY_MS: "2000" }, stdout: "ignore", stderr: "ignore", detached: true });
    try {
      for (let k = 0; k < 400 && g.info().status !== "Broken"; k++) await Bun.sleep(25);
      expect(g.info().status).toBe("Broken");
      const { code, report } = warm();
      expect(code).toBe(0);
      expect(report.ok).toBe(true);
      expect(report.actions).not.toContain("recreated");
      expect(report.actions).not.toContain("created");
      expect(report.actions).toContain("waited_ready");
      expect(g.sh("cat", "marker")).toBe("keep\n");
      expect(await bg.exited).toBe(0);
    } finally {
      if (bg.exitCode === null) process.kill(-bg.pid, "SIGKILL");
    }
  }, T);

  test("Running is not ready: substrate -c while the VM boots waits for /run/lima-boot-done", async () => {
    expect(g.limactl(["stop", "substrate"]).code).toBe(0);
    const bg = Bun.spawn([LIMACTL, "start", "substrate"], { env: { ...env, LIMA_EMU_SSH_DELAY_MS: "4000" }, stdout: "ignore", stderr: "ignore", detached: true });
    try {
      for (let k = 0; k < 400 && g.info().status !== "Running"; k++) await Bun.sleep(25);
      expect(g.info().status).toBe("Running");
      expect(g.limactl(["shell", "substrate", "test", "-e", "/run/lima-boot-done"]).code).not.toBe(0);
      const r = substrate(["-c", "echo ready"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe("ready\n");
      expect(r.stderr).toMatch(/world VM: .*waited_ready/);
      expect(await bg.exited).toBe(0);
    } finally {
      if (bg.exitCode === null) process.kill(-bg.pid, "SIGKILL");
    }
  }, T);

  test("a stale ha.pid (Broken after a crash): warm repairs with stop -f + start and keeps the VM", () => {
    expect(g.limactl(["stop", "substrate"]).code).toBe(0);
    const foreign = Bun.spawn(["sleep", "300"], { stdout: "ignore", stderr: "ignore" });
    try {
      writeFileSync(join(g.dir, "ha.pid"), `${foreign.pid}\n`);
      expect(g.info().status).toBe("Broken");
      const w = substrate(["world", "warm", "--json"]);
      const report = JSON.parse(w.stdout.trim().split("\n").pop()!);
      expect(w.code).toBe(0);
      expect(report.actions).toEqual(["stopped_forcibly", "started"]);
      expect(g.sh("cat", "marker")).toBe("keep\n");
    } finally {
      foreign.kill("SIGKILL");
    }
  }, T);

  test("a start failure gets the virtualization hint only for Lima's real virtualization errors; the VM is never deleted for it", () => {
    expect(g.limactl(["stop", "substrate"]).code).toBe(0);
    const net = substrate(["world", "warm"], { LIMA_EMU_FAIL_START: "failed to download the image: Get \"https://cloud-images.ubuntu.com/\": connection reset by peer" });
    expect(net.code).toBe(3);
    const netOut = net.stdout + net.stderr;
    expect(netOut).toContain("with internal VM driver `vz`"); // Lima's line is in the error…
    expect(netOut).not.toContain("enable virtualization"); // …but is no virtualization error
    expect(netOut).toContain("limactl delete -f substrate && substrate world warm");
    const vz = substrate(["world", "warm"], { LIMA_EMU_FAIL_START: "VZ driver requires macOS 13 or higher to run" });
    expect(vz.code).toBe(3);
    expect(vz.stdout + vz.stderr).toContain("enable virtualization");
    expect(existsSync(join(g.dir, "lima.yaml"))).toBe(true);
    expect(warm().report.actions).toEqual(["started"]);
    expect(g.sh("cat", "marker")).toBe("keep\n");
  }, T);

  test("Lima older than 2.0: warm refuses with the upgrade step; doctor names it", () => {
    const w = substrate(["world", "warm"], { LIMA_EMU_VERSION: "1.1.0" });
    expect(w.code).toBe(4);
    expect(w.stdout + w.stderr).toContain("Lima 1.1.0 is too old: substrate needs Lima >= 2.0.0");
    const d = substrate(["host", "doctor"], { LIMA_EMU_VERSION: "1.1.0", SUBSTRATE_DOCTOR_PLATFORM: "macos", PATH: `${shim}:${env.PATH}` });
    expect(d.stdout).toContain("FAIL  | lima: version 1.1.0 is older than 2.0.0, which substrate needs\nINFO  | fix: brew upgrade lima");
  }, T);

  test("an unrepairable Broken VM (stop -f + start fails) is re-created, and warm says what is lost", () => {
    expect(g.limactl(["stop", "substrate"]).code).toBe(0);
    // No init left for systemd-nspawn --boot (it tries /usr/lib/systemd/systemd, /lib/…, /sbin/init).
    for (const p of ["usr/lib/systemd/systemd", "usr/sbin/init"]) rmSync(join(work, "lima/substrate/rootfs", p), { force: true });
    const foreign = Bun.spawn(["sleep", "300"], { stdout: "ignore", stderr: "ignore" });
    try {
      writeFileSync(join(g.dir, "ha.pid"), `${foreign.pid}\n`);
      expect(g.info().status).toBe("Broken");
      // `substrate -c` itself repairs it (the backend's full path), with one note line. Ubuntu
      // has meanwhile dropped the dated image: Lima falls back to the release/ entry.
      rmSync(join(env.XDG_CACHE_HOME!, "lima"), { recursive: true, force: true });
      const r = substrate(["-c", "echo fresh"], { LIMA_EMU_UNAVAILABLE_URLS: "release-20260705" });
      expect(r.code).toBe(0);
      expect(r.stdout).toBe("fresh\n");
      expect(r.stderr).toMatch(/substrate: world VM: .*recreated.*pushed_agent.*provisioned/);
      expect(r.stderr).toContain("anything stored inside the VM (not in your mounted project) is lost");
      expect(cached(FALLBACK)).toBe(true);
    } finally {
      foreign.kill("SIGKILL");
    }
    expect(g.limactl(["shell", "substrate", "test", "-e", "marker"]).code).toBe(1);
    const st = substrate(["world", "status", "--json"]);
    expect(st.code).toBe(0);
    expect(JSON.parse(st.stdout).layout.problems).toEqual([]);
  }, T);

  test("without Lima on PATH or in the usual places: exit 4 with the install hint", () => {
    const r = substrate(["world", "warm"], { PATH: "/usr/bin:/bin" });
    expect(r.code).toBe(4);
    expect(r.stdout + r.stderr).toContain("brew install lima");
  }, T);

  test("limactl not on PATH but beside the substrate binary (a Homebrew install; GUI/launchd PATH): found, and doctor says where", () => {
    symlinkSync(LIMACTL, join(work, "limactl"));
    try {
      const st = substrate(["world", "status", "--json"], { PATH: "/usr/bin:/bin" });
      expect(st.code).toBe(0);
      expect(JSON.parse(st.stdout).ok).toBe(true);
      const d = substrate(["host", "doctor"], { PATH: `${shim}:/usr/bin:/bin`, SUBSTRATE_DOCTOR_PLATFORM: "macos" });
      expect(d.stdout).toContain(`PASS  | lima: limactl found beside substrate (${join(work, "limactl")}; not on PATH, substrate uses it anyway)`);
      expect(d.stdout).toContain("PASS  | lima: version 2.2.0 (>= 2.0.0)");
      expect(d.stdout).toContain("PASS  | lima VM 'substrate': Running");
    } finally {
      rmSync(join(work, "limactl"), { force: true });
    }
  }, T);
});

describe("the host binary carries the guest assets", () => {
  test("world assets list: agent, units, profiles, provision step", () => {
    const r = Bun.spawnSync([bin, "world", "assets", "list", "--json"], { stdout: "pipe", stderr: "pipe" });
    expect(r.exitCode).toBe(0);
    const info = JSON.parse(r.stdout.toString());
    expect(info.agent.target).toBe("linux-x64");
    const paths = info.assets.map((a: { path: string }) => a.path);
    for (const p of ["substrate-world-agent.socket", "substrate-world-agent.service", "provision.sh", "lima/substrate.yaml", "lima/substrate-dev.yaml"]) expect(paths).toContain(p);
  });

  test("the darwin-arm64 host binary embeds the zstd linux-arm64 agent", () => {
    const b = Bun.spawnSync([process.execPath, "scripts/build.ts", "--target", "darwin-arm64"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    expect(b.exitCode).toBe(0);
    const darwin = readFileSync(join(ROOT, "dist/substrate-darwin-arm64"));
    const zst = readFileSync(join(ROOT, "dist/.build/substrate-world-agent-linux-arm64.zst"));
    expect(darwin.length).toBeGreaterThan(zst.length);
    expect(darwin.subarray(0, 4).toString("hex")).toMatch(/^(cffaedfe|cafebabe)$/); // Mach-O
    for (const at of [0, Math.floor(zst.length / 2), zst.length - 4096]) expect(darwin.indexOf(zst.subarray(at, at + 4096))).toBeGreaterThan(0);
    expect(darwin.indexOf(readFileSync(join(ROOT, "guest-assets/substrate-world-agent.socket")))).toBeGreaterThan(0);
  }, 600_000);
});

