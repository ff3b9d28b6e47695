/**
 * The macOS world path, end to end, on Linux: the compiled host binary runs the SAME mac
 * backend code (hidden test switch SUBSTRATE_TEST_LIMA_BACKEND=1) against the limactl
 * emulator (tests/e2e/harness): `world warm` creates the VM, pushes the embedded agent +
 * units with `limactl copy`, provisions, validates; `substrate -c` runs in the guest's
 * world through an ssh2 forward of /run/substrate.sock. Each kind of damage (agent version,
 * unit, socket group, stopped socket, missing binary, broken VM) is detected and repaired.
 * Needs root; the guest image is built once per machine.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { adoptGuest, destroyGuest, ensureGuestImage, harnessEnv, type Guest } from "./harness/harness.ts";

const ROOT = resolve(import.meta.dir, "../..");
const T = 240_000;
let work: string;
let bin: string;
let project: string;
let env: Record<string, string>;
let g: Guest;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}
function substrate(args: string[], extra: Record<string, string> = {}, stdin?: string): Run {
  const r = Bun.spawnSync([bin, ...args], { cwd: project, env: { ...env, ...extra }, stdout: "pipe", stderr: "pipe", stdin: stdin === undefined ? "ignore" : Buffer.from(stdin) });
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
  project = join(work, "project");
  Bun.spawnSync(["mkdir", "-p", project, join(work, "lima"), join(work, "home")]);
  env = {
    ...harnessEnv(join(work, "lima")),
    SUBSTRATE_HOME: join(work, "home"),
    SUBSTRATE_TEST_LIMA_BACKEND: "1",
    // Lima's SSH master keeps pre-provision groups until `shell --reconnect` (see lima-emu.ts).
    LIMA_EMU_SSH_MASTER: "1",
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
  test("fresh warm creates the VM and provisions the socket-activated layout", () => {
    const { code, report } = warm();
    expect(code).toBe(0);
    expect(report.ok).toBe(true);
    // The SSH master predates the new group: warm reconnects instead of failing.
    expect(report.actions).toEqual(expect.arrayContaining(["created", "pushed_agent", "pushed_units", "provisioned", "reconnected"]));
    expect(report.layout.problems).toEqual([]);
    expect(report.layout.agent_version).toBe(report.expected_agent_version);
    expect(g.sh("stat", "-c", "%U:%G %a", "/run/substrate.sock").trim()).toBe("root:substrate 660");
    expect(g.sh("systemctl", "is-enabled", "substrate-world-agent.socket").trim()).toBe("enabled");
    // The units in the guest are byte-identical to guest-assets/.
    for (const u of ["substrate-world-agent.socket", "substrate-world-agent.service"])
      expect(g.sh("cat", `/etc/systemd/system/${u}`)).toBe(readFileSync(join(ROOT, "guest-assets", u), "utf8"));
    const state = JSON.parse(readFileSync(join(work, "home/lima/state.json"), "utf8"));
    expect(state.phase).toBe("ready");
  }, T);

  test("substrate -c runs in the guest's world through the forwarded socket", () => {
    const r = substrate(["-c", "echo hi; cat /etc/hostname; echo made > from-world.txt"]);
    expect(r.stderr).not.toContain("running on the host");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("hi\nlima-substrate\n");
    // The project is mounted writable into the VM (virtiofs on a Mac, a bind here).
    expect(readFileSync(join(project, "from-world.txt"), "utf8")).toBe("made\n");
    expect(substrate(["-c", "exit 7"]).code).toBe(7);
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
    ["a stopped socket", "systemctl stop substrate-world-agent.service substrate-world-agent.socket", "provisioned"],
    ["a removed binary", "rm /usr/local/bin/substrate-world-agent", "pushed_agent"],
    ["a user dropped from the group", "gpasswd -d lima substrate", "provisioned"],
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

  test("lima-native: Lima's own guestSocket forward (profile portForwards) is used first; a dead one falls back with one warning", async () => {
    const native = join(g.dir, "sock", "substrate.sock");
    const r = substrate(["-c", "echo native"], { SUBSTRATE_DEBUG: "1" });
    expect(r.stdout).toBe("native\n");
    expect(r.stderr).toContain(`using lima-native at ${native}`);
    expect(r.stderr).not.toContain("warning");
    // Lima's forwarder dies, its socket file stays: fall back to our ssh2 forward, say so once.
    const st = JSON.parse(readFileSync(join(g.dir, "emu.json"), "utf8"));
    expect(st.forwards).toHaveLength(1);
    process.kill(-st.forwards[0].proc.pid, "SIGKILL");
    await Bun.sleep(200);
    expect(existsSync(native)).toBe(true);
    const f = substrate(["-c", "echo fallback"]);
    expect(f.code).toBe(0);
    expect(f.stdout).toBe("fallback\n");
    expect(f.stderr.match(/substrate: warning: world transport: using ssh-uds/g)?.length).toBe(1);
  }, T);

  test("a Broken VM is destroyed and recreated (guest state is disposable)", () => {
    g.sh("sh", "-c", "echo gone > ~/marker");
    expect(g.limactl(["stop", "substrate"]).code).toBe(0);
    rmSync(join(work, "lima/substrate/rootfs/sbin/init"), { force: true });
    expect(g.info().status).toBe("Broken");
    // `substrate -c` itself repairs it (the backend's full path), with one note line.
    const r = substrate(["-c", "echo fresh"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("fresh\n");
    expect(r.stderr).toMatch(/substrate: world VM: .*recreated.*pushed_agent.*provisioned/);
    expect(g.limactl(["shell", "substrate", "test", "-e", "marker"]).code).toBe(1);
    const st = substrate(["world", "status", "--json"]);
    expect(st.code).toBe(0);
    expect(JSON.parse(st.stdout).layout.problems).toEqual([]);
  }, T);

  test("without Lima on PATH: exit 4 with the install hint", () => {
    const r = substrate(["world", "warm"], { PATH: "/usr/bin:/bin" });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain("brew install lima");
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

