/**
 * A `limactl` emulator for Linux test machines (see docs/dev/lima_guest_harness.md, which lists
 * for every behaviour below the Lima source file it follows, so it can be re-checked against a
 * newer Lima).
 *
 * Real Lima cannot run here (no macOS, no usable VM), so an "instance" is a Debian rootfs
 * booted with systemd as PID 1 inside `systemd-nspawn`. The guest is real (its systemd, socket
 * activation, users, groups and sshd); only the VM boundary is emulated. What the product can
 * observe follows Lima 2.x (lima-vm/lima v2.2.0 / 183a60d7):
 *
 * - the default user is the macOS login name + uid (stand-in: LIMA_EMU_MAC_USER/LIMA_EMU_MAC_UID,
 *   because the tests run as root), home `/home/<user>.guest` (Lima >= 2.1) with a `.linux` link;
 * - ONE shared SSH key `$LIMA_HOME/_config/user`; `ssh.config` as the hostagent writes it;
 * - a REAL OpenSSH ControlMaster (started at boot, like the hostagent's); `guestSocket` forwards
 *   are `ssh -O forward -L` registrations on it, made once at boot and never re-created:
 *   `shell --reconnect` (`ssh -O exit`) or a dead master leaves a host socket that refuses;
 * - sessions carry the groups the master logged in with (sshd fixes them at login);
 * - `shell` runs `cd <host cwd> || cd <host home> ; exec /bin/bash -l -c '<quoted args>'`;
 * - `copy` prefers rsync (`-a`) when the guest has it (a Mac always has /usr/bin/rsync), else scp;
 * - `shell` and `copy` hand their stdio to the child and install no SIGTERM handler;
 * - status from pid files: ha.pid is written before ha.sock answers and before <vmType>.pid
 *   exists, so a starting instance (or a stale ha.pid) reads `Broken`; `Running` comes before
 *   sshd answers and before `/run/lima-boot-done` (the only readiness `limactl start` waits for);
 * - `provision:` system scripts run at boot; a failing one is recorded and boot-done still written;
 * - `limactl start` logs "Starting the instance `N` with internal VM driver `vz`" every time;
 * - `minimumLimaVersion`, reserved mount points and the version-gated flags are checked.
 *
 * Knobs for tests (all optional): LIMA_EMU_VERSION (default 2.2.0), LIMA_EMU_MAC_USER (macdev),
 * LIMA_EMU_MAC_UID (501), LIMA_EMU_HA_DELAY_MS (hostagent start-up window), LIMA_EMU_SSH_DELAY_MS
 * (sshd answers late), LIMA_EMU_BOOT_DONE_DELAY_MS, LIMA_EMU_DOWNLOAD_MS (image download time),
 * LIMA_EMU_FAIL_START (a start fails with this message), LIMA_EMU_SSH_MASTER=0 (every session
 * logs in afresh: a plain Linux box, not Lima).
 *
 * Traps (measured on Debian 12, hybrid cgroups, no systemd on the host):
 * - nspawn needs `--register=no --keep-unit` without a host systemd, and its own cgroup
 *   (name=systemd and unified) or the guest's systemd takes over the caller's cgroup.
 * - Killing nspawn alone orphans the guest: a forced stop SIGKILLs the guest's PID 1.
 * - Processes are identified by pid + start time, never by name; the emulator signals only
 *   processes it started (a foreign pid in a stale ha.pid is reported, never killed).
 * - nspawn's default seccomp filter denies Landlock; a real VM has it, so it is allowed.
 */
import { chmodSync, chownSync, closeSync, existsSync, lstatSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmdirSync, rmSync, statSync, symlinkSync, writeFileSync, writeSync } from "node:fs";
import { connect, createServer } from "node:net";
import { homedir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";

const HERE = dirname(Bun.fileURLToPath(import.meta.url));
const EMU_VERSION = process.env.LIMA_EMU_VERSION || "2.2.0";
const GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/** What Debian's sshd gives a session before the login shell reads /etc/profile. */
const SSHD_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/games";
const CGROUP_ROOTS = ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified", ...v1ControllerRoots()];
/**
 * Issue 18.2 (DEPLOY, additive): the guest also gets its own cgroup in the v1 memory, cpu and
 * pids hierarchies (nested under this process's own, so it never leaves a limit the caller is
 * under). nspawn mounts them read-only in the guest; tests/e2e/linux-systemd.test.ts makes them
 * writable (as in a VM) to test world limits under the unit, and whatever the guest's systemd
 * and agent create there then stays inside the instance's cgroup and goes with it (removeCgroups).
 */
function v1ControllerRoots(): string[] {
  const out: string[] = [];
  let own: string[] = [];
  try {
    own = readFileSync("/proc/self/cgroup", "utf8").split("\n");
  } catch {}
  for (const c of ["memory", "cpu", "pids"]) {
    const mount = `/sys/fs/cgroup/${c}`;
    if (!existsSync(join(mount, "tasks"))) continue; // not a v1 hierarchy of its own here
    const path = own.map((l) => l.split(":")).find((f) => f[1]?.split(",").includes(c))?.[2] ?? "/";
    out.push(join(mount, path));
  }
  return out;
}
const BOOT_TIMEOUT_MS = Number(process.env.LIMA_EMU_BOOT_TIMEOUT_MS ?? 90_000);
const STOP_TIMEOUT_MS = Number(process.env.LIMA_EMU_STOP_TIMEOUT_MS ?? 60_000);
const envMs = (k: string) => Math.max(0, Number(process.env[k] ?? 0) || 0);
const MASTER_MODE = process.env.LIMA_EMU_SSH_MASTER !== "0";

class UsageError extends Error {}
class FatalError extends Error {}

// ---------------------------------------------------------------- small helpers

const limaHome = (): string => process.env.LIMA_HOME || join(homedir(), ".lima");
const instDir = (name: string): string => join(limaHome(), name);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function fatal(msg: string): never {
  throw new FatalError(msg);
}
function info(msg: string): void {
  process.stderr.write(`INFO[0000] ${msg}\n`);
}
function warn(msg: string): void {
  process.stderr.write(`WARN[0000] ${msg}\n`);
}
/** Go's %#q: backquoted. */
const q = (s: string) => `\`${s}\``;

/** Go's al.essio.dev/pkg/shellescape.Quote, which Lima uses for `shell`. */
export function shellQuote(s: string): string {
  if (s === "") return "''";
  if (!/[^\w@%+=:,./-]/.test(s)) return s;
  return "'" + s.replaceAll("'", `'"'"'`) + "'";
}

function run(argv: string[], opts: { stdin?: "inherit" | "ignore"; timeout?: number } = {}) {
  const r = Bun.spawnSync(argv, { stdin: opts.stdin ?? "ignore", stdout: "pipe", stderr: "pipe", timeout: opts.timeout });
  return { code: r.exitCode ?? 1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** versionutil.GreaterEqual for "X.Y.Z[-suffix]" (a suffix counts as the same release). */
export function versionGE(a: string, b: string): boolean {
  const p = (v: string) => v.replace(/^v/, "").split(/[-+]/)[0]!.split(".").map((x) => Number(x) || 0);
  const [x, y] = [p(a), p(b)];
  for (let i = 0; i < 3; i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) > (y[i] ?? 0);
  return true;
}

/** Start time of a pid (field 22 of /proc/PID/stat), or null when gone or a zombie. */
function startTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (rest[0] === "Z" || rest[0] === "X") return null;
    return rest[19] ?? null;
  } catch {
    return null;
  }
}
interface ProcId {
  pid: number;
  start: string;
}
const procId = (pid: number): ProcId | null => {
  const start = startTime(pid);
  return start === null ? null : { pid, start };
};
const alive = (p: ProcId | null | undefined): boolean => !!p && startTime(p.pid) === p.start;
function signal(p: ProcId | null | undefined, sig: NodeJS.Signals): void {
  if (alive(p)) {
    try {
      process.kill(p!.pid, sig);
    } catch {}
  }
}
function signalGroup(p: ProcId | null | undefined, sig: NodeJS.Signals): void {
  // Started in their own session: the pgid is the pid, per-connection children share it.
  if (alive(p)) {
    try {
      process.kill(-p!.pid, sig);
    } catch {}
  }
}
async function waitGone(p: ProcId | null | undefined, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (alive(p)) {
    if (Date.now() > end) return false;
    await sleep(50);
  }
  return true;
}

// ---------------------------------------------------------------- instance state

/** Processes the emulator started for a running instance (identities: pid + start time). */
interface EmuState {
  /** Stand-in for `limactl hostagent`: serves ha.sock; its pid is in ha.pid. */
  hostagent: ProcId | null;
  /** The "driver" (systemd-nspawn); its pid is in <vmType>.pid. */
  nspawn: ProcId | null;
  guest: ProcId | null;
  /** 127.0.0.1:sshLocalPort → guest sshd. */
  socat: ProcId | null;
  sshLocalPort: number;
  /** The hostagent's OpenSSH ControlMaster (a real `ssh -M`). */
  master?: ProcId | null;
  /** guestSocket forwards registered on the master at boot (never re-created). */
  forwards?: { hostSocket: string; guestSocket: string }[];
  /** Host paths actually bind-mounted (skipped mounts are not here). */
  mounts?: string[];
}
/** The guest's default user as Lima derives it (pkg/osutil/user.go LimaUser). */
interface GuestUser {
  name: string;
  uid: number;
  home: string;
}
interface Profile {
  vmType: string;
  arch: string;
  cpus: number;
  memory: string;
  disk: string;
  mounts: unknown[];
  raw: Record<string, unknown>;
}

function readState(dir: string): EmuState | null {
  try {
    return JSON.parse(readFileSync(join(dir, "emu.json"), "utf8")) as EmuState;
  } catch {
    return null;
  }
}
function writeState(dir: string, st: EmuState): void {
  writeFileSync(join(dir, "emu.json"), JSON.stringify(st) + "\n");
}
const driverPidFile = (dir: string, vmType: string) => join(dir, `${vmType}.pid`);
function clearState(dir: string): void {
  rmSync(join(dir, "emu.json"), { force: true });
  for (const f of readdirSync(dir)) {
    // Lima's StopForcibly removes *.pid, *.sock and *.tmp under the instance dir.
    if (f.endsWith(".pid") || f.endsWith(".sock") || f === "ssh-proxy.sh" || f === "ssh.master") rmSync(join(dir, f), { force: true });
  }
}

function readUser(dir: string): GuestUser | null {
  try {
    return JSON.parse(readFileSync(join(dir, "emu-user.json"), "utf8")) as GuestUser;
  } catch {
    return null;
  }
}
function requireUser(dir: string): GuestUser {
  return readUser(dir) ?? fatal(`instance at ${dir} has no user record (emu-user.json); delete and re-create it`);
}
const instanceLimaVersion = (dir: string): string => {
  try {
    return readFileSync(join(dir, "lima-version"), "utf8").trim() || EMU_VERSION;
  } catch {
    return EMU_VERSION;
  }
};

function hostArch(): string {
  return process.arch === "arm64" ? "aarch64" : "x86_64";
}

function loadProfile(file: string): Profile {
  let raw: Record<string, unknown>;
  try {
    raw = (Bun.YAML.parse(readFileSync(file, "utf8")) ?? {}) as Record<string, unknown>;
  } catch (e) {
    fatal(`failed to load YAML file ${q(file)}: ${(e as Error).message}`);
  }
  if (typeof raw !== "object" || Array.isArray(raw)) fatal(`failed to load YAML file ${q(file)}: not a mapping`);
  const str = (v: unknown, d: string) => (typeof v === "string" || typeof v === "number" ? String(v) : d);
  const arch = str(raw.arch, "default");
  return {
    vmType: str(raw.vmType, process.platform === "darwin" ? "vz" : "qemu"),
    arch: arch === "default" ? hostArch() : arch,
    cpus: typeof raw.cpus === "number" ? raw.cpus : 4,
    memory: str(raw.memory, "4GiB"),
    disk: str(raw.disk, "100GiB"),
    mounts: Array.isArray(raw.mounts) ? raw.mounts : [],
    raw,
  };
}

const expandHome = (p: string) => (p === "~" ? homedir() : p.startsWith("~/") ? join(homedir(), p.slice(2)) : p);

/** The checks of pkg/limayaml/validate.go the product can trip over. */
function validateProfile(p: Profile, user: GuestUser): void {
  const errs: string[] = [];
  const min = p.raw.minimumLimaVersion;
  if (min !== undefined) {
    if (typeof min !== "string" || !/^v?\d+\.\d+\.\d+/.test(min)) errs.push(`field \`minimumLimaVersion\` must be a semvar value, got ${q(String(min))}`);
    else if (!versionGE(EMU_VERSION, min)) errs.push(`template requires Lima version ${q(min)}; this is only ${q(EMU_VERSION)}`);
  }
  p.mounts.forEach((m, i) => {
    if (!m || typeof m !== "object") return;
    const { location, mountPoint } = m as { location?: unknown; mountPoint?: unknown };
    if (typeof location !== "string") return;
    const mp = typeof mountPoint === "string" && mountPoint ? mountPoint : resolve(expandHome(location));
    if (["/", "/bin", "/dev", "/etc", "/home", "/opt", "/sbin", "/tmp", "/usr", "/var"].includes(mp))
      errs.push(`field \`mounts[${i}].mountPoint\` must not be a system path such as /etc or /usr`);
    else if (mp === user.home) errs.push(`field \`mounts[${i}].mountPoint\` is the reserved internal home directory ${q(user.home)}`);
  });
  if (errs.length) fatal(errs.join("\n"));
}

/** docker/go-units RAMInBytes: "2GiB", "4G", "512MiB" → bytes (binary multiples). */
function ramInBytes(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$/i.exec(s);
  if (!m) return 0;
  const pow = " kmgtp".indexOf(m[2]!.toLowerCase() || " ");
  return Math.round(Number(m[1]) * 1024 ** Math.max(pow, 0));
}

type Status = "Running" | "Stopped" | "Broken" | "";
interface Inspected {
  name: string;
  dir: string;
  status: Status;
  state: EmuState | null;
  profile: Profile | null;
  user: GuestUser | null;
  hostAgentPID: number;
  driverPID: number;
  errors: string[];
}

function exists(name: string): boolean {
  return existsSync(join(instDir(name), "lima.yaml"));
}

/** pkg/store ReadPIDFile: 0 when missing or the process is gone (the file is then removed). */
function readPidFile(path: string): number {
  let pid: number;
  try {
    pid = Number(readFileSync(path, "utf8").trim());
  } catch {
    return 0;
  }
  if (!Number.isInteger(pid) || pid <= 0) return 0;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (e) {
    if ((e as { code?: string }).code === "EPERM") return pid;
    rmSync(path, { force: true });
    return 0;
  }
}

/** The hostagent's Info call over ha.sock (3 s, like store.Inspect). */
function haInfo(dir: string): string | null {
  const sock = join(dir, "ha.sock");
  if (!existsSync(sock)) return `failed to connect to ${q(sock)}: dial unix ${sock}: connect: no such file or directory`;
  const r = run(["socat", "-T3", "-u", `UNIX-CONNECT:${sock}`, "-"], { timeout: 3000 });
  return r.stdout.trim() === "ok" ? null : `failed to get Info from ${q(sock)}: ${r.stderr.trim() || "no answer"}`;
}

/** pkg/store/instance.go Inspect + inspectStatusWithPIDFiles. */
function inspect(name: string): Inspected {
  const dir = instDir(name);
  const errors: string[] = [];
  let profile: Profile | null = null;
  let status: Status = "";
  try {
    profile = loadProfile(join(dir, "lima.yaml"));
  } catch (e) {
    errors.push((e as Error).message);
  }
  const state = readState(dir);
  const user = readUser(dir);
  if (!profile) return { name, dir, status, state, profile, user, hostAgentPID: 0, driverPID: 0, errors };
  const ha = readPidFile(join(dir, "ha.pid"));
  if (ha > 0) {
    const err = haInfo(dir);
    if (err) {
      status = "Broken";
      errors.push(err);
    }
  }
  const drv = readPidFile(driverPidFile(dir, profile.vmType));
  if (status === "") {
    if (ha > 0 && drv > 0) status = "Running";
    else if (ha === 0 && drv === 0) status = "Stopped";
    else if (ha > 0) {
      errors.push("host agent is running but driver is not");
      status = "Broken";
    } else {
      errors.push(`${profile.vmType} driver is running but host agent is not`);
      status = "Broken";
    }
  }
  return { name, dir, status, state, profile, user, hostAgentPID: ha, driverPID: drv, errors };
}

function instanceJson(i: Inspected): Record<string, unknown> {
  const p = i.profile;
  const running = i.status === "Running" && i.state;
  const config: Record<string, unknown> = { ...(p?.raw ?? {}) };
  if (p) {
    // FillDefault fills these; `list --json` prints the filled config.
    config.vmType = p.vmType;
    config.arch = p.arch;
    if (i.user) config.user = { name: i.user.name, uid: i.user.uid, home: i.user.home, shell: "/bin/bash" };
  }
  const o: Record<string, unknown> = {
    name: i.name,
    hostname: `lima-${i.name}`,
    status: i.status,
    dir: i.dir,
    vmType: p?.vmType ?? "",
    arch: p?.arch ?? hostArch(),
    cpuType: "",
    cpus: p?.cpus ?? 0,
    memory: p ? ramInBytes(p.memory) : 0,
    disk: p ? ramInBytes(p.disk) : 0,
    sshLocalPort: running ? i.state!.sshLocalPort : 0,
    sshConfigFile: join(i.dir, "ssh.config"),
    sshAddress: "127.0.0.1",
    hostAgentPID: i.hostAgentPID,
    driverPID: i.driverPID,
    config,
    protected: false,
    limaVersion: instanceLimaVersion(i.dir),
    HostOS: "darwin",
    HostArch: hostArch(),
    LimaHome: limaHome(),
  };
  if (i.errors.length) o.errors = i.errors;
  return o;
}

// ---------------------------------------------------------------- cgroups

/**
 * Host-global names (cgroups, nspawn's machine name) must be unique per instance DIR, not
 * per NAME: two LIMA_HOMEs (parallel test files) may both have a "substrate", and cleaning
 * one must never SIGKILL the other's guest.
 */
export const instanceKey = (name: string, dir: string = instDir(name)): string =>
  `${name}-${new Bun.CryptoHasher("sha256").update(resolve(dir)).digest("hex").slice(0, 8)}`;
const cgroupName = (name: string) => `lima-emu-${instanceKey(name)}`;

function cgroupPids(dir: string): number[] {
  const out: number[] = [];
  const walk = (d: string) => {
    try {
      for (const l of readFileSync(join(d, "cgroup.procs"), "utf8").split("\n")) if (l) out.push(Number(l));
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
    } catch {}
  };
  walk(dir);
  return out;
}

function rmdirDepthFirst(d: string): void {
  for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) rmdirDepthFirst(join(d, e.name));
  rmdirSync(d);
}

/**
 * Removes the instance's cgroups. Anything still inside them belongs to this instance
 * (the guest's processes), so it is SIGKILLed first.
 */
async function removeCgroups(name: string): Promise<void> {
  for (const root of CGROUP_ROOTS) {
    const d = join(root, cgroupName(name));
    if (!existsSync(d)) continue;
    for (let attempt = 0; ; attempt++) {
      const pids = cgroupPids(d);
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }
      try {
        rmdirDepthFirst(d);
        break;
      } catch (e) {
        if (attempt >= 40) fatal(`cannot remove cgroup ${d}: ${(e as Error).message}`);
        await sleep(50);
      }
    }
  }
}

// ---------------------------------------------------------------- guest image

function guestImage(): string {
  if (process.env.LIMA_EMU_IMAGE) return process.env.LIMA_EMU_IMAGE;
  const r = run(["bash", join(HERE, "build-guest.sh")]);
  if (r.code !== 0) fatal(`building the guest image failed (tests/e2e/harness/build-guest.sh):\n${r.stderr.trim()}`);
  return r.stdout.trim().split("\n").pop()!;
}

function unpack(image: string, rootfs: string): void {
  mkdirSync(rootfs, { recursive: true });
  const r = run([
    "bash",
    "-c",
    `set -o pipefail; zstd -q -dc -- "$1" | tar --numeric-owner --xattrs --xattrs-include='*' -xpf - -C "$2"`,
    "unpack",
    image,
    rootfs,
  ]);
  if (r.code !== 0) fatal(`unpacking ${image} failed: ${r.stderr.trim()}`);
}

/**
 * Lima names the guest lima-NAME (cloud-init). debootstrap copied the build host's
 * /etc/hostname, which the guest's systemd would prefer over nspawn's --hostname, and
 * without an /etc/hosts line every `sudo` warns "unable to resolve host".
 */
function setGuestHostname(rootfs: string, hostname: string): void {
  writeFileSync(join(rootfs, "etc/hostname"), `${hostname}\n`);
  writeFileSync(join(rootfs, "etc/hosts"), `127.0.0.1\tlocalhost\n127.0.1.1\t${hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`);
}


// ---------------------------------------------------------------- the default user and the shared key

/** pkg/osutil/user.go LimaUser: the macOS login name and uid (stand-ins here: tests run as root). */
function limaUser(limaVersion: string): GuestUser & { gid: number } {
  let name = process.env.LIMA_EMU_MAC_USER || "macdev";
  if (!/^[a-z_][a-z0-9_-]*$/.test(name)) {
    warn(`local username ${q(name)} is not a valid Linux username (must match ${q("^[a-z_][a-z0-9_-]*$")}); using ${q("lima")} instead`);
    name = "lima";
  }
  if (versionGE(limaVersion, "1.0.0") && name === "admin") {
    warn(`local username ${q(name)} is reserved; using ${q("lima")} instead`);
    name = "lima";
  }
  const uid = Number(process.env.LIMA_EMU_MAC_UID ?? 501);
  const home = versionGE(limaVersion, "2.1.0") ? `/home/${name}.guest` : `/home/${name}.linux`;
  return { name, uid, gid: uid, home };
}

/** cloud-init's `users:` entry from Lima's user-data (uid, homedir, bash, NOPASSWD sudo). */
function createUser(rootfs: string, u: GuestUser): void {
  const r = run(["chroot", rootfs, "/usr/bin/env", "-i", `PATH=${GUEST_PATH}`, "useradd", "--uid", String(u.uid), "--user-group", "--create-home", "--home-dir", u.home, "--shell", "/bin/bash", u.name]);
  if (r.code !== 0) fatal(`creating the guest user ${u.name} failed: ${r.stderr.trim()}`);
  writeFileSync(join(rootfs, "etc/sudoers.d/90-lima-users"), `${u.name} ALL=(ALL) NOPASSWD:ALL\n`, { mode: 0o440 });
}

/** boot.Linux/05-guest-home.sh: keep both home names working. */
function linkHomes(rootfs: string, u: GuestUser): void {
  const base = u.home.replace(/\.(guest|linux)$/, "");
  for (const [have, want] of [[".guest", ".linux"], [".linux", ".guest"]]) {
    const h = join(rootfs, `${base}${have}`);
    const w = join(rootfs, `${base}${want}`);
    if (existsSync(h) && statSync(h).isDirectory() && !lstatExists(w)) symlinkSync(`${basename(base)}${have}`, w);
  }
}
function lstatExists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** Lima's one shared identity: $LIMA_HOME/_config/user (pkg/sshutil DefaultPubKeys). */
const sharedKey = (): string => join(limaHome(), "_config", "user");
function ensureSharedKey(): string {
  const key = sharedKey();
  if (!existsSync(key)) {
    mkdirSync(dirname(key), { recursive: true, mode: 0o700 });
    const r = run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lima", "-f", key]);
    if (r.code !== 0 && !existsSync(key)) fatal(`ssh-keygen failed: ${r.stderr.trim()}`);
  }
  return key;
}
function authorize(rootfs: string, u: GuestUser & { gid?: number }): void {
  const key = ensureSharedKey();
  const sshDir = join(rootfs, u.home.slice(1), ".ssh");
  mkdirSync(sshDir, { recursive: true });
  const gid = statSync(join(rootfs, u.home.slice(1))).gid;
  chownSync(sshDir, u.uid, gid);
  chmodSync(sshDir, 0o700);
  const ak = join(sshDir, "authorized_keys");
  writeFileSync(ak, readFileSync(`${key}.pub`));
  chownSync(ak, u.uid, gid);
  chmodSync(ak, 0o600);
}

// ---------------------------------------------------------------- boot / stop

function guestExec(guest: ProcId, argv: string[]) {
  return run(["nsenter", "-t", String(guest.pid), "-m", "-p", "--", ...argv]);
}
function guestRoot(guest: ProcId, argv: string[]) {
  return run(["nsenter", "-t", String(guest.pid), "-a", "--", "env", "-i", `PATH=${GUEST_PATH}`, ...argv]);
}

async function freePort(): Promise<number> {
  return await new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

/** Resolves true once something on 127.0.0.1:port answers with an SSH banner. */
async function sshBanner(port: number): Promise<boolean> {
  return await new Promise((res) => {
    const c = connect(port, "127.0.0.1");
    let buf = "";
    const done = (v: boolean) => {
      c.destroy();
      res(v);
    };
    c.setTimeout(3000, () => done(false));
    c.on("data", (d) => {
      buf += d.toString();
      if (buf.includes("\n")) done(buf.startsWith("SSH-"));
    });
    c.on("error", () => done(false));
    c.on("close", () => done(buf.startsWith("SSH-")));
  });
}

/** pkg/hostagent writeSSHConfigFile + pkg/sshutil CommonOpts/SSHOpts, same order. */
function writeSshConfig(name: string, dir: string, port: number, user: GuestUser): void {
  const text = `# This SSH config file can be passed to 'ssh -F'.
# This file is created by Lima, but not used by Lima itself currently.
# Modifications to this file will be lost on restarting the Lima instance.
Host lima-${name}
  IdentityFile "${sharedKey()}"
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  NoHostAuthenticationForLocalhost yes
  PreferredAuthentications publickey
  Compression no
  BatchMode yes
  IdentitiesOnly yes
  GSSAPIAuthentication no
  Ciphers "^aes128-gcm@openssh.com,aes256-gcm@openssh.com"
  User ${user.name}
  ControlMaster auto
  ControlPath "${join(dir, "ssh.sock")}"
  ControlPersist yes
  Hostname 127.0.0.1
  Port ${port}
`;
  writeFileSync(join(dir, "ssh.config"), text);
}

/** `ssh -F <dir>/ssh.config ARGS lima-NAME`, stdio away from ours (a master must not hold our pipes). */
async function sshCtl(name: string, dir: string, args: string[], timeoutMs = 30_000): Promise<{ code: number; stderr: string }> {
  const log = join(dir, `ssh.ctl.${process.pid}.log`);
  const fd = openSync(log, "w");
  const p = Bun.spawn(["ssh", "-F", join(dir, "ssh.config"), ...args, `lima-${name}`], { detached: true, stdin: "ignore", stdout: "ignore", stderr: fd, timeout: timeoutMs });
  closeSync(fd);
  const code = await p.exited;
  let stderr = "";
  try {
    stderr = readFileSync(log, "utf8");
  } catch {}
  rmSync(log, { force: true });
  return { code, stderr };
}

/** The master's pid from `ssh -O check` ("Master running (pid=N)"), or null. */
async function masterPid(name: string, dir: string): Promise<ProcId | null> {
  if (!existsSync(join(dir, "ssh.sock"))) return null;
  const r = await sshCtl(name, dir, ["-O", "check"], 10_000);
  const m = /pid=(\d+)/.exec(r.stderr);
  return r.code === 0 && m ? procId(Number(m[1])) : null;
}

/**
 * requirements.go "Explicitly start ssh ControlMaster": a real OpenSSH master. Its sshd session
 * fixed the user's groups at login; the emulator's `shell`/`copy` sessions use the same snapshot
 * (NAME/ssh.master), as Lima's multiplexed sessions do.
 */
async function startMaster(name: string, dir: string, guest: ProcId, user: GuestUser): Promise<ProcId> {
  const r = await sshCtl(name, dir, ["-f", "-N", "-o", "ControlMaster=yes"], 30_000);
  const m = await masterPid(name, dir);
  if (!m) fatal(`starting the ssh ControlMaster failed (exit ${r.code}): ${r.stderr.trim()}`);
  const g = run(["nsenter", "-t", String(guest.pid), "-a", "--", "id", "-G", user.name]);
  writeFileSync(join(dir, "ssh.master"), `${g.stdout.trim().split(/\s+/).join(",")}\n`);
  return m;
}

/** osutil.RemoveStaleSocket: a socket file nobody listens on is removed. */
function removeStaleSocket(path: string): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) return;
  const r = run(["socat", "-T1", "-u", `UNIX-CONNECT:${path}`, "/dev/null"], { timeout: 3000 });
  if (r.code !== 0) rmSync(path, { force: true });
}

/** hostagent.go watchGuestAgentEvents: each guestSocket rule → `ssh -O forward -L host:guest`, once. */
async function registerSocketForwards(name: string, dir: string, user: GuestUser): Promise<{ hostSocket: string; guestSocket: string }[]> {
  let list: unknown[] = [];
  try {
    const pf = loadProfile(join(dir, "lima.yaml")).raw.portForwards;
    if (Array.isArray(pf)) list = pf;
  } catch {}
  const out: { hostSocket: string; guestSocket: string }[] = [];
  for (const f of list) {
    const { guestSocket, hostSocket } = (f ?? {}) as { guestSocket?: unknown; hostSocket?: unknown };
    if (typeof guestSocket !== "string" || typeof hostSocket !== "string") continue;
    // executeHostTemplate vs executeGuestTemplate (pkg/limayaml/defaults.go).
    const host = hostSocket.replaceAll("{{.Dir}}", dir).replaceAll("{{.Name}}", name).replaceAll("{{.Home}}", homedir());
    const guest = guestSocket.replaceAll("{{.Home}}", user.home).replaceAll("{{.Name}}", name);
    info(`Forwarding ${q(guest)} (guest) to ${q(host)} (host)`);
    removeStaleSocket(host);
    mkdirSync(dirname(host), { recursive: true, mode: 0o750 });
    const r = await sshCtl(name, dir, ["-T", "-O", "forward", "-L", `${host}:${guest}`, "-N", "-f"]);
    if (r.code !== 0) {
      warn(`Failed to set up forward from ${q(guest)} (guest) to ${q(host)} (host): ${r.stderr.trim()}`);
      removeStaleSocket(host);
      continue;
    }
    out.push({ hostSocket: host, guestSocket: guest });
  }
  return out;
}

/**
 * Image download of Prepare (pkg/instance/start.go tries the arch's `images:` in order;
 * pkg/fileutils/download.go + pkg/downloader): logged, cached by URL. LIMA_EMU_UNAVAILABLE_URLS
 * (comma-separated substrings) makes those locations fail, as a dated image Ubuntu removed would.
 */
async function prepareImage(dir: string, p: Profile): Promise<void> {
  const images = Array.isArray(p.raw.images) ? (p.raw.images as Record<string, unknown>[]) : [];
  if (!images.length) fatal("no images are configured (did you set --image-variant or --arch-variant to a value not present in the template?)");
  const candidates = images.filter((x) => x && typeof x.location === "string" && (x.arch ?? hostArch()) === p.arch);
  if (!candidates.length) fatal(`no image for arch ${q(p.arch)}`);
  const unavailable = (process.env.LIMA_EMU_UNAVAILABLE_URLS ?? "").split(",").filter(Boolean);
  const errs: string[] = [];
  for (const img of candidates) {
    const url = String(img.location);
    const cache = join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "lima", "download", "by-url-sha256", new Bun.CryptoHasher("sha256").update(url).digest("hex"));
    info(`Attempting to download the image  arch=${p.arch} digest=${JSON.stringify(String(img.digest ?? ""))} location=${JSON.stringify(url)}`);
    const data = join(cache, "data");
    if (existsSync(data)) {
      info(`Using cache ${JSON.stringify(data)}`);
      return;
    }
    if (unavailable.some((u) => url.includes(u))) {
      errs.push(`failed to download ${q(url)}: expected HTTP status 200, got 404 Not Found`);
      continue;
    }
    mkdirSync(cache, { recursive: true });
    const tmp = `${data}.tmp.${process.pid}.1`;
    const ms = envMs("LIMA_EMU_DOWNLOAD_MS");
    const fd = openSync(tmp, "w");
    const chunk = new Uint8Array(256 * 1024);
    const steps = ms > 0 ? 20 : 1;
    for (let k = 0; k < steps; k++) {
      writeSync(fd, chunk);
      if (ms > 0) await sleep(ms / steps);
    }
    closeSync(fd);
    renameSync(tmp, data);
    info(`Downloaded the image from ${JSON.stringify(url)}`);
    return;
  }
  fatal(errs.join("\n"));
}

/** boot.sh's provision.system/* step: run as root, record a failure, go on (boot-done is written anyway). */
function runProvisionScripts(dir: string, p: Profile, g: ProcId): void {
  const list = Array.isArray(p.raw.provision) ? (p.raw.provision as Record<string, unknown>[]) : [];
  let n = 0;
  for (const e of list) {
    if (!e || typeof e.script !== "string" || (e.mode !== undefined && e.mode !== "system")) continue;
    const file = `/var/lib/lima-emu/provision.system/${String(n++).padStart(8, "0")}`;
    const host = join(dir, "rootfs", file.slice(1));
    mkdirSync(dirname(host), { recursive: true });
    writeFileSync(host, e.script, { mode: 0o700 });
    const r = guestRoot(g, e.script.startsWith("#!") ? [file] : ["/bin/sh", file]);
    const line = r.code === 0 ? `LIMA| Executed ${file}\n` : `LIMA| WARNING: Failed to execute ${file} (exit ${r.code})\n${r.stdout}${r.stderr}`;
    writeFileSync(join(dir, "serial.log"), line, { flag: "a" });
  }
}

async function boot(name: string, timeoutMs: number): Promise<void> {
  const dir = instDir(name);
  const rootfs = join(dir, "rootfs");
  const p = loadProfile(join(dir, "lima.yaml"));
  const user = requireUser(dir);
  await removeCgroups(name);
  linkHomes(rootfs, user);
  authorize(rootfs, user);
  const deadline = Date.now() + timeoutMs;
  const st: EmuState = { hostagent: null, nspawn: null, guest: null, socat: null, sshLocalPort: 0 };
  const failBoot = async (why: string): Promise<never> => {
    await teardown(name, st, true);
    clearState(dir);
    let tail = "";
    try {
      tail = readFileSync(join(dir, "serial.log"), "utf8").trim().split("\n").slice(-15).join("\n");
    } catch {}
    fatal(`${why}${tail ? `\n--- ${join(dir, "serial.log")} (tail) ---\n${tail}` : ""}`);
  };

  // `limactl hostagent` writes ha.pid first (cmd/limactl/hostagent.go), and only later serves
  // ha.sock: until then (and until the driver's pid file exists) the instance reads Broken.
  const haDelay = envMs("LIMA_EMU_HA_DELAY_MS");
  const ha = Bun.spawn(["bash", "-c", `sleep ${haDelay / 1000}; exec socat UNIX-LISTEN:"$1",fork,unlink-early SYSTEM:"echo ok"`, "lima-hostagent", join(dir, "ha.sock")], {
    detached: true,
    stdin: "ignore",
    stdout: "ignore",
    stderr: "ignore",
  });
  ha.unref();
  st.hostagent = procId(ha.pid);
  writeState(dir, st);
  writeFileSync(join(dir, "ha.pid"), `${ha.pid}\n`);
  while (haInfo(dir) !== null) {
    if (!alive(st.hostagent)) return failBoot("host agent process has exited");
    if (Date.now() > deadline) return failBoot(`hostagent (${q(join(dir, "ha.pid"))}) did not start up in ${timeoutMs} ms`);
    await sleep(50);
  }

  for (const root of CGROUP_ROOTS) mkdirSync(join(root, cgroupName(name)), { recursive: true });
  const log = openSync(join(dir, "serial.log"), "a");
  // The launcher enters the instance's own cgroups before exec'ing nspawn (see header).
  const script = CGROUP_ROOTS.map((r) => `echo $$ > ${join(r, cgroupName(name), "cgroup.procs")}`).join(" && ");
  const child = Bun.spawn(
    [
      "bash",
      "-c",
      `${script} && exec systemd-nspawn --boot --directory="$1" --machine="$3" --hostname="lima-$2" --register=no --keep-unit --console=passive --private-network --system-call-filter="landlock_create_ruleset landlock_add_rule landlock_restrict_self" "\${@:4}"`,
      "lima-emu",
      rootfs,
      name,
      instanceKey(name),
      ...bindArgs(dir, user),
    ],
    { detached: true, stdin: "ignore", stdout: log, stderr: log },
  );
  child.unref();
  closeSync(log);
  st.nspawn = procId(child.pid);
  st.mounts = effectiveMounts(dir, user);
  writeState(dir, st);
  if (!st.nspawn) return failBoot("systemd-nspawn exited immediately");
  // The driver runs: from here on `list` says Running, long before sshd answers.
  writeFileSync(driverPidFile(dir, p.vmType), `${child.pid}\n`);

  // The guest's PID 1 is nspawn's child whose NSpid ends in 1 (pid 1 in its namespace).
  while (!st.guest) {
    if (!alive(st.nspawn)) return failBoot("systemd-nspawn exited during boot");
    if (Date.now() > deadline) return failBoot("guest init did not appear");
    let kids: string[] = [];
    try {
      kids = readFileSync(`/proc/${st.nspawn.pid}/task/${st.nspawn.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
    } catch {}
    for (const k of kids) {
      try {
        const nspid = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${k}/status`, "utf8"))?.[1]?.trim().split(/\s+/);
        if (nspid && nspid.length > 1 && nspid[nspid.length - 1] === "1") st.guest = procId(Number(k));
      } catch {}
    }
    if (!st.guest) await sleep(20);
  }
  const g = st.guest as ProcId;
  writeState(dir, st);

  let state = "";
  for (;;) {
    if (!alive(st.nspawn) || !alive(g)) return failBoot("the guest stopped during boot");
    state = guestExec(g, ["systemctl", "is-system-running"]).stdout.trim();
    if (state === "running" || state === "degraded") break;
    if (Date.now() > deadline) return failBoot(`guest did not finish booting in ${timeoutMs} ms (state: ${state || "unknown"})`);
    await sleep(100);
  }
  const sshDelay = envMs("LIMA_EMU_SSH_DELAY_MS");
  if (sshDelay) await sleep(sshDelay); // a VM's kernel + cloud-init take this long before sshd answers

  // SSH: a loopback port on the host forwarded into the guest's private netns.
  const port = Number((profileSsh(dir).localPort as number | undefined) || 0) || (await freePort());
  // socat splits EXEC's command line on ':' (the address syntax), so the inner
  // `TCP:127.0.0.1:22` lives in a tiny script instead.
  const proxy = join(dir, "ssh-proxy.sh");
  writeFileSync(proxy, `#!/bin/sh\nexec nsenter -t ${g.pid} -n socat STDIO TCP:127.0.0.1:22\n`, { mode: 0o755 });
  const sshLog = openSync(join(dir, "ssh.forward.log"), "w");
  const socatProc = Bun.spawn(["socat", ...(process.env.LIMA_EMU_DEBUG ? ["-d", "-d"] : []), `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, `EXEC:${proxy}`], {
    detached: true,
    stdin: "ignore",
    stdout: "ignore",
    stderr: sshLog,
  });
  closeSync(sshLog);
  socatProc.unref();
  st.socat = procId(socatProc.pid);
  writeState(dir, st);
  for (;;) {
    if (!alive(st.socat)) return failBoot(`ssh forwarder (socat on 127.0.0.1:${port}) exited; is the port in use?`);
    if (await sshBanner(port)) break;
    if (Date.now() > deadline) return failBoot("sshd in the guest did not answer");
    await sleep(100);
  }
  writeSshConfig(name, dir, port, user);
  st.sshLocalPort = port;
  try {
    st.master = await startMaster(name, dir, g, user);
  } catch (e) {
    return failBoot((e as Error).message);
  }
  writeState(dir, st);
  st.forwards = await registerSocketForwards(name, dir, user);
  writeState(dir, st);
  if (state === "degraded") {
    const failed = guestExec(g, ["systemctl", "--failed", "--no-legend", "--plain"]).stdout.trim();
    warn(`guest booted degraded; failed units:\n${failed}`);
  }
  runProvisionScripts(dir, p, g);
  const doneDelay = envMs("LIMA_EMU_BOOT_DONE_DELAY_MS");
  if (doneDelay) await sleep(doneDelay);
  // boot.sh's last step; requirements.go "boot scripts must have finished" waits for it.
  const r = guestRoot(g, ["sh", "-c", `printf '%s\\n' ${shellQuote(instanceKey(name))} > /run/lima-boot-done`]);
  if (r.code !== 0) return failBoot(`writing /run/lima-boot-done failed: ${r.stderr.trim()}`);
}

/** Paths of the guest system that a host mount must never shadow. */
const systemDirs = (u: GuestUser) => new Set(["/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/proc", "/root", "/run", "/sbin", "/sys", "/tmp", "/usr", "/var", u.home]);

interface MountPlan {
  src: string;
  dst: string;
  writable: boolean;
}
function planMounts(dir: string, u: GuestUser, say: boolean): MountPlan[] {
  let mounts: unknown[] = [];
  try {
    mounts = loadProfile(join(dir, "lima.yaml")).mounts;
  } catch {}
  const out: MountPlan[] = [];
  for (const m of mounts) {
    if (!m || typeof m !== "object") continue;
    const { location, mountPoint, writable } = m as { location?: unknown; mountPoint?: unknown; writable?: unknown };
    if (typeof location !== "string") continue;
    const src = resolve(expandHome(location));
    const dst = typeof mountPoint === "string" && mountPoint ? resolve(expandHome(mountPoint)) : src;
    if (systemDirs(u).has(dst)) {
      if (say) warn(`mount ${location} → ${dst} skipped: it would shadow the guest's ${dst}`);
      continue;
    }
    if (!existsSync(src)) {
      if (say) warn(`mount ${location} skipped: ${src} does not exist on the host`);
      continue;
    }
    if (src.includes(":") || dst.includes(":")) {
      if (say) warn(`mount ${location} skipped: nspawn cannot bind paths containing ':'`);
      continue;
    }
    out.push({ src, dst, writable: writable === true });
  }
  return out;
}
/**
 * The profile's `mounts:` as nspawn bind mounts (virtiofs stand-in): same path in the guest
 * unless `mountPoint` says otherwise, read-only unless `writable: true` (Lima's default). "~"
 * is the host user's home. A mount that would shadow a guest system directory (e.g. "~" =
 * /root when tests run as root) is skipped with a warning.
 */
function bindArgs(dir: string, u: GuestUser): string[] {
  return planMounts(dir, u, true).map((m) => `${m.writable ? "--bind" : "--bind-ro"}=${m.src}:${m.dst}`);
}
const effectiveMounts = (dir: string, u: GuestUser): string[] => planMounts(dir, u, false).map((m) => m.src);

function profileSsh(dir: string): Record<string, unknown> {
  try {
    const p = loadProfile(join(dir, "lima.yaml"));
    const s = p.raw.ssh;
    return s && typeof s === "object" ? (s as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** Stops the guest: orderly (SIGTERM to nspawn = poweroff) or forced (SIGKILL guest PID 1). */
async function teardown(name: string, st: EmuState, force: boolean): Promise<void> {
  const dir = instDir(name);
  // HostAgent.close: cancel the socket forwards (their stale host sockets are removed), then the master.
  if (alive(st.master)) {
    for (const f of st.forwards ?? []) await sshCtl(name, dir, ["-T", "-O", "cancel", "-L", `${f.hostSocket}:${f.guestSocket}`, "-N", "-f"], 10_000);
    await sshCtl(name, dir, ["-O", "exit"], 10_000);
    signal(st.master, "SIGKILL");
    await waitGone(st.master, 5_000);
  }
  for (const f of st.forwards ?? []) removeStaleSocket(f.hostSocket);
  signalGroup(st.socat, "SIGTERM");
  if (!force) {
    signal(st.nspawn, "SIGTERM");
    if (!(await waitGone(st.nspawn, STOP_TIMEOUT_MS))) {
      warn(`orderly shutdown did not finish in ${STOP_TIMEOUT_MS} ms; forcing`);
      force = true;
    }
  }
  if (force) {
    // Killing only nspawn would orphan the guest: kill its PID 1 (the whole pid namespace).
    signal(st.guest, "SIGKILL");
    if (!(await waitGone(st.nspawn, 10_000))) signal(st.nspawn, "SIGKILL");
    await waitGone(st.nspawn, 5_000);
  }
  signalGroup(st.socat, "SIGKILL");
  await waitGone(st.socat, 5_000);
  signalGroup(st.hostagent, "SIGKILL");
  await waitGone(st.hostagent, 5_000);
  await removeCgroups(name);
}

// ---------------------------------------------------------------- commands

interface Parsed {
  flags: Map<string, string | true>;
  args: string[];
}
/** Minimal cobra-like parsing: `--x=v`, `--x v` for known value flags, `-f`. */
function parse(argv: string[], valueFlags: string[], interspersed = true): Parsed {
  const flags = new Map<string, string | true>();
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith("-") && a !== "-" && (interspersed || args.length === 0)) {
      const eq = a.indexOf("=");
      const key = (eq > 0 ? a.slice(0, eq) : a).replace(/^-+/, "");
      if (eq > 0) flags.set(key, a.slice(eq + 1));
      else if (valueFlags.includes(key)) {
        if (i + 1 >= argv.length) throw new UsageError(`flag needs an argument: ${a}`);
        flags.set(key, argv[++i]!);
      } else flags.set(key, true);
      continue;
    }
    if (!interspersed && args.length > 0) {
      args.push(...argv.slice(i));
      break;
    }
    args.push(a);
  }
  return { flags, args };
}
/** A flag this Lima version does not have is cobra's "unknown flag". */
function gate(flags: Map<string, string | true>, flag: string, since: string): void {
  if (flags.has(flag) && !versionGE(EMU_VERSION, since)) throw new UsageError(`unknown flag: --${flag}`);
}

function requireInstance(name: string): Inspected {
  if (!exists(name)) fatal(`instance ${q(name)} does not exist, run \`limactl create ${name}\` to create a new instance`);
  return inspect(name);
}

function validName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) || name.length > 60) fatal(`invalid instance name ${q(name)}`);
}

/** Go durations as `--timeout` takes them: 10m, 600s, 1h30m. */
function duration(s: string): number {
  let ms = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g)) ms += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as "ms"]!;
  if (!ms) throw new UsageError(`invalid argument ${JSON.stringify(s)} for "--timeout" flag: time: invalid duration`);
  return ms;
}

async function cmdCreate(argv: string[], andStart: boolean): Promise<number> {
  const { flags, args } = parse(argv, ["name", "timeout", "set", "cpus", "memory", "disk", "vm-type", "arch"]);
  const timeoutMs = typeof flags.get("timeout") === "string" ? duration(flags.get("timeout") as string) : BOOT_TIMEOUT_MS;
  let name = typeof flags.get("name") === "string" ? (flags.get("name") as string) : "";
  const target = args[0];
  // `limactl start NAME` (existing instance) vs `limactl start [--name N] FILE.yaml`.
  const isFile = target !== undefined && (target.endsWith(".yaml") || target.endsWith(".yml") || target.includes("/") || target === "-");
  if (andStart && target !== undefined && !isFile && !name) {
    if (exists(target)) return await startExisting(target, timeoutMs);
    name = target;
  }
  if (!name) name = target && isFile ? basename(target).replace(/\.ya?ml$/, "") : target ?? "default";
  validName(name);
  const dir = instDir(name);
  if (exists(name)) {
    if (!isFile && andStart) return await startExisting(name, timeoutMs);
    fatal(`instance ${q(name)} already exists (${q(dir)})`);
  }
  let yamlText: string;
  if (target && isFile) {
    try {
      yamlText = target === "-" ? await Bun.stdin.text() : readFileSync(target, "utf8");
    } catch (e) {
      fatal(`failed to read ${q(target)}: ${(e as Error).message}`);
    }
  } else yamlText = "# default template (emulator)\nvmType: qemu\n";
  // instance.Create: validate (FillDefault + Validate) before anything is written.
  const tmpProfile = join(limaHome(), `.${name}.${process.pid}.yaml`);
  mkdirSync(limaHome(), { recursive: true });
  writeFileSync(tmpProfile, yamlText);
  let profile: Profile;
  const user = limaUser(EMU_VERSION);
  try {
    profile = loadProfile(tmpProfile);
    validateProfile(profile, user);
  } finally {
    rmSync(tmpProfile, { force: true });
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "lima.yaml"), yamlText);
  writeFileSync(join(dir, "lima-version"), `${EMU_VERSION}\n`);
  writeFileSync(join(dir, "emu-user.json"), JSON.stringify(user) + "\n");
  if (!andStart) {
    info(`Run \`limactl start ${name}\` to start the instance.`);
    return 0;
  }
  return await startExisting(name, timeoutMs);
}

/** Prepare's disk step: the "disk" is the unpacked rootfs, made from the image on first start. */
async function prepareDisk(dir: string, p: Profile): Promise<void> {
  const rootfs = join(dir, "rootfs");
  if (existsSync(rootfs)) return;
  await prepareImage(dir, p);
  const tmp = `${rootfs}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  try {
    unpack(guestImage(), tmp);
    setGuestHostname(tmp, `lima-${basename(dir)}`);
    // Persistent journal: after a guest dies, `journalctl -D DIR/rootfs/var/log/journal` tells why.
    mkdirSync(join(tmp, "var/log/journal"), { recursive: true });
    createUser(tmp, requireUser(dir));
    renameSync(tmp, rootfs);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

async function startExisting(name: string, timeoutMs = BOOT_TIMEOUT_MS): Promise<number> {
  const i = inspect(name);
  if (i.status === "Running") {
    warn(`The instance ${q(name)} is already running. Run \`limactl shell ${name}\` to open the shell.`);
    return 0;
  }
  const haPid = join(i.dir, "ha.pid");
  if (existsSync(haPid)) fatal(`instance ${q(name)} seems running (hint: remove ${q(haPid)} if the instance is not actually running)`);
  if (!i.profile) fatal(i.errors.join("; "));
  validateProfile(i.profile, requireUser(i.dir));
  if (i.state) await teardown(name, i.state, true); // stale state from an unclean exit
  clearState(i.dir);
  info(`Starting the instance ${q(name)} with internal VM driver ${q(i.profile.vmType)}`);
  if (process.env.LIMA_EMU_FAIL_START) fatal(process.env.LIMA_EMU_FAIL_START);
  await prepareDisk(i.dir, i.profile);
  const t0 = performance.now();
  await boot(name, timeoutMs);
  info(`READY. Run \`limactl shell ${name}\` to open the shell. (emulator: booted in ${Math.round(performance.now() - t0)} ms)`);
  return 0;
}

async function cmdStop(argv: string[]): Promise<number> {
  const { flags, args } = parse(argv, []);
  const force = flags.has("f") || flags.has("force");
  const name = args[0] ?? "default";
  const i = requireInstance(name);
  if (!force) {
    if (i.status !== "Running") fatal(`expected status ${q("Running")}, got ${q(i.status)} (maybe use \`limactl stop -f\`?)`);
    info(`Sending SIGINT to hostagent process ${i.hostAgentPID}`);
    if (i.state) await teardown(name, i.state, false);
    else await removeCgroups(name);
    clearState(i.dir);
    info(`The instance ${name} has shut down`);
    return 0;
  }
  // instance.StopForcibly: SIGKILL the driver and hostagent pids from the pid files, remove
  // *.pid/*.sock. The emulator signals only processes it started itself (pid + start time).
  const mine = (pid: number) => [i.state?.nspawn, i.state?.hostagent].some((p) => p && p.pid === pid && alive(p));
  if (i.driverPID > 0) info(`Sending SIGKILL to the ${i.profile?.vmType ?? "vz"} driver process ${i.driverPID}${mine(i.driverPID) ? "" : " (emulator: not its own process, left alone)"}`);
  else info(`The ${i.profile?.vmType ?? "vz"} driver process seems already stopped`);
  if (i.hostAgentPID > 0) info(`Sending SIGKILL to the host agent process ${i.hostAgentPID}${mine(i.hostAgentPID) ? "" : " (emulator: not its own process, left alone)"}`);
  else info("The host agent process seems already stopped");
  if (i.state) await teardown(name, i.state, true);
  else await removeCgroups(name);
  clearState(i.dir);
  return 0;
}

function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const mp = line.split(" ")[4];
    if (mp && (mp === dir || mp.startsWith(dir + "/"))) out.push(mp);
  }
  return out;
}

async function cmdDelete(argv: string[]): Promise<number> {
  const { flags, args } = parse(argv, []);
  const force = flags.has("f") || flags.has("force");
  if (args.length === 0) throw new UsageError("requires at least 1 arg(s), only received 0");
  for (const name of args) {
    if (!exists(name)) {
      if (existsSync(instDir(name))) {
        // Half-created directory: nothing to stop.
        rmSync(instDir(name), { recursive: true, force: true });
        continue;
      }
      if (force) continue;
      fatal(`unable to delete instance ${q(name)}: instance ${q(name)} does not exist`);
    }
    const i = inspect(name);
    if (i.status !== "Stopped" && !force) fatal(`expected status ${q("Stopped")}, got ${q(i.status)}`);
    if (i.state) await teardown(name, i.state, true);
    await removeCgroups(name);
    clearState(i.dir);
    const m = mountsUnder(i.dir);
    if (m.length) fatal(`refusing to delete ${i.dir}: still mounted: ${m.join(", ")}`);
    rmSync(i.dir, { recursive: true, force: true });
    info(`Deleted ${q(name)} (${q(i.dir)})`);
  }
  return 0;
}

function listNames(): string[] {
  try {
    return readdirSync(limaHome(), { withFileTypes: true })
      .filter((e) => e.isDirectory() && !e.name.startsWith("_") && !e.name.startsWith(".") && exists(e.name))
      .map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
}

function goTemplate(tpl: string, o: Record<string, unknown>): string {
  return tpl
    .replace(/\{\{\s*\.(\w+)\s*\}\}/g, (_, k: string) => {
      // Go field names (SSHLocalPort) vs JSON keys (sshLocalPort): match case-insensitively.
      const key = Object.keys(o).find((x) => x.toLowerCase() === k.toLowerCase());
      const v = key === undefined ? undefined : o[key];
      return v === undefined ? "<no value>" : typeof v === "object" ? JSON.stringify(v) : String(v);
    })
    .replace(/\\n/g, "\n");
}

function cmdList(argv: string[]): number {
  const { flags, args } = parse(argv, ["format", "f"]);
  const format = (flags.get("format") ?? flags.get("f")) as string | true | undefined;
  const json = flags.has("json") || format === "json";
  const quiet = flags.has("q") || flags.has("quiet");
  let names = listNames();
  let code = 0;
  if (args.length) {
    const want = args;
    for (const w of want) {
      if (!names.includes(w)) {
        warn(`No instance matching ${w} found.`);
        code = 1;
      }
    }
    names = names.filter((n) => want.includes(n));
  }
  if (!names.length && !args.length && !json && !quiet) {
    warn("No instance found. Run `limactl create` to create an instance.");
    return 0;
  }
  const rows = names.map((n) => instanceJson(inspect(n)));
  if (quiet) for (const r of rows) process.stdout.write(`${r.name}\n`);
  else if (json) for (const r of rows) process.stdout.write(JSON.stringify(r) + "\n");
  else if (typeof format === "string" && format !== "table") for (const r of rows) process.stdout.write(goTemplate(format, r) + "\n");
  else {
    const table = [["NAME", "STATUS", "SSH", "VMTYPE", "ARCH", "CPUS", "MEMORY", "DISK", "DIR"]];
    const gib = (b: unknown) => `${Math.round((Number(b) / 1024 ** 3) * 10) / 10}GiB`;
    for (const r of rows) {
      table.push([
        String(r.name),
        String(r.status),
        r.sshLocalPort ? `127.0.0.1:${r.sshLocalPort}` : "127.0.0.1:0",
        String(r.vmType),
        String(r.arch),
        String(r.cpus),
        gib(r.memory),
        gib(r.disk),
        String(r.dir).replace(homedir(), "~"),
      ]);
    }
    const w = table[0]!.map((_, c) => Math.max(...table.map((row) => row[c]!.length)));
    for (const row of table) process.stdout.write(row.map((c, k) => (k === row.length - 1 ? c : c.padEnd(w[k]! + 4))).join("").trimEnd() + "\n");
  }
  return code;
}

type Live = Inspected & { state: EmuState & { guest: ProcId }; user: GuestUser };
function running(name: string): Live {
  const i = requireInstance(name);
  if (i.status === "Stopped") fatal(`instance ${q(name)} is stopped, run \`limactl start ${name}\` to start the instance`);
  if (i.status !== "Running" || !i.state?.guest || !i.user) fatal(`instance ${q(name)} is ${i.status || "unknown"}: ${i.errors.join("; ")}`);
  return i as Live;
}

/** What ssh says while the VM runs but sshd does not answer yet. */
function sshUp(i: Live): boolean {
  return i.state.sshLocalPort > 0 && existsSync(join(i.dir, "ssh.config"));
}
function sshRefused(i: Live): never {
  process.stderr.write(`ssh: connect to host 127.0.0.1 port ${i.state.sshLocalPort || 22}: Connection refused\n`);
  process.exit(255);
}

/**
 * `ssh` with ControlMaster=auto: reuse the master, or become a new one (a new login, so the
 * user's CURRENT groups). The forwards registered on an old master are not re-created.
 */
async function ensureMaster(i: Live): Promise<void> {
  if (alive(i.state.master) && existsSync(join(i.dir, "ssh.sock"))) return;
  const lock = join(i.dir, "ssh.master.lock");
  for (let k = 0; ; k++) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (k > 300) rmSync(lock, { recursive: true, force: true });
      await sleep(20);
    }
  }
  try {
    const st = readState(i.dir) ?? i.state;
    if (alive(st.master) && existsSync(join(i.dir, "ssh.sock"))) {
      i.state.master = st.master;
      return;
    }
    rmSync(join(i.dir, "ssh.sock"), { force: true });
    st.master = await startMaster(i.name, i.dir, i.state.guest, i.user);
    writeState(i.dir, st);
    i.state.master = st.master;
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** The groups an SSH session of this instance carries (the master's, from its login). */
function sessionGroups(i: Live): string {
  if (MASTER_MODE) {
    try {
      return readFileSync(join(i.dir, "ssh.master"), "utf8").trim();
    } catch {}
  }
  const r = run(["nsenter", "-t", String(i.state.guest.pid), "-a", "--", "id", "-G", i.user.name]);
  return r.stdout.trim().split(/\s+/).join(",");
}

/** argv (host side) of what sshd runs for `ssh ... -- SCRIPT`: `$SHELL -c SCRIPT` in the home. */
function sshSession(i: Live, script: string): string[] {
  const u = i.user;
  const gid = statSync(join(i.dir, "rootfs", u.home.slice(1))).gid;
  return [
    "nsenter", "-t", String(i.state.guest.pid), "-a", "--",
    "env", "-i", `PATH=${SSHD_PATH}`, `HOME=${u.home}`, `USER=${u.name}`, `LOGNAME=${u.name}`, "SHELL=/bin/bash",
    "setpriv", `--reuid=${u.uid}`, `--regid=${gid}`, `--groups=${sessionGroups(i)}`, "--",
    "/bin/bash", "-c", 'cd ~ || exit 1; exec /bin/bash -c "$1"', "sshd-session", script,
  ];
}

/** mountsContainPath (cmd/limactl/shell.go), over the mounts the emulator actually made. */
function mountsContain(i: Live, p: string): boolean {
  return (i.state.mounts ?? []).some((m) => p === m || p.startsWith(m.endsWith("/") ? m : `${m}/`));
}

async function cmdShell(argv: string[]): Promise<number> {
  const { flags, args } = parse(argv, ["shell", "workdir"], false);
  gate(flags, "reconnect", "1.1.0");
  let rest = args;
  if (rest.length >= 2 && rest[1] === "--") rest = [rest[0]!, ...rest.slice(2)];
  const name = rest[0];
  if (!name) throw new UsageError("requires at least 1 arg(s), only received 0");
  const i = running(name);
  if (!sshUp(i)) sshRefused(i);
  if (flags.has("reconnect") && existsSync(join(i.dir, "ssh.sock"))) {
    info(`Exiting ssh session for the instance ${q(name)}`);
    await sshCtl(name, i.dir, ["-O", "exit"], 10_000);
    await waitGone(i.state.master, 5_000);
    rmSync(join(i.dir, "ssh.master"), { force: true });
  }
  await ensureMaster(i);
  // cmd/limactl/shell.go: the cd step, then `exec <user.shell> -l`, then `-c '<quoted args>'`.
  const workdir = flags.get("workdir");
  const cwd = process.cwd();
  const home = homedir();
  let changeDir: string;
  if (typeof workdir === "string" && workdir) changeDir = `cd ${shellQuote(workdir)} || exit 1`;
  else if (mountsContain(i, cwd)) changeDir = `cd ${shellQuote(cwd)} || cd ${shellQuote(home)}`;
  else if (mountsContain(i, home)) changeDir = `cd ${shellQuote(home)}`;
  else changeDir = "false";
  const sh = typeof flags.get("shell") === "string" ? shellQuote(flags.get("shell") as string) : shellQuote("/bin/bash");
  let script = `${changeDir} ; exec ${sh} -l`;
  if (rest.length > 1) {
    let parsingEnv = true;
    const quoted = rest.slice(1).map((a) => {
      if (parsingEnv && /^[A-Za-z_][A-Za-z0-9_]*=/.test(a)) {
        const k = a.indexOf("=");
        return `${a.slice(0, k)}=${shellQuote(a.slice(k + 1))}`;
      }
      parsingEnv = false;
      return shellQuote(a);
    });
    script += ` -c ${shellQuote(quoted.join(" "))}`;
  }
  // sshCmd.Stdin/Stdout/Stderr = os.Std*: the child holds our stdio; no signal is forwarded.
  const p = Bun.spawn(sshSession(i, script), { stdin: "inherit", stdout: "inherit", stderr: "inherit" });
  return await p.exited;
}

interface Endpoint {
  instance: string | null;
  path: string;
}
function endpoint(s: string): Endpoint {
  const k = s.indexOf(":");
  if (k > 0) {
    const inst = s.slice(0, k);
    if (!exists(inst)) fatal(`instance ${q(inst)} does not exist`);
    return { instance: inst, path: s.slice(k + 1) };
  }
  return { instance: null, path: s };
}

/** Unpack a tar stream at DST with scp/rsync's rules (see cmdCopy). */
const UNPACK = (dst: string, mode: "into" | "as", name: string) =>
  mode === "into"
    ? `dst=${shellQuote(dst)}; mkdir -p -- "$dst" && exec tar -xf - --no-same-owner -C "$dst"`
    : `dst=${shellQuote(dst)}; name=${shellQuote(name)}
parent=$(dirname -- "$dst")
tmp=$(mktemp -d "$parent/.lima-copy.XXXXXX") || exit 1
rc=0
tar -xf - --no-same-owner -C "$tmp" && { [ ! -d "$dst" ] || [ -d "$tmp/$name" ] || rm -rf -- "$dst"; } && mv -fT -- "$tmp/$name" "$dst" || rc=1
rm -rf -- "$tmp"
exit $rc`;
/** Pack SRC: the entry itself (`cd parent; tar NAME`) or its contents (`tar .`). */
const PACK = (src: string, contents: boolean) =>
  contents ? `cd -- ${shellQuote(src)} && exec tar -cf - .` : `cd -- ${shellQuote(dirname(src))} && exec tar -cf - -- ${shellQuote(basename(src))}`;

/**
 * `limactl copy` (cmd/limactl/copy.go, pkg/copytool): backend auto = rsync when the guest has
 * it (the Mac host always has /usr/bin/rsync), else scp; both as the default user over SSH.
 *   scp:   directories need -r; an existing directory DST receives SRC inside it.
 *   rsync: `-a` (recursive without -r); with -r Lima appends "/" to every path without one
 *          (and strips it from those with one), so `copy -r dir inst:dst` puts dir's CONTENTS
 *          into dst (lima-vm/lima#4468, #5500); a file into "dst/" or an existing dir lands inside.
 * The tool's stdio is ours, and no signal is forwarded (copy.go has no SIGTERM handler).
 */
async function cmdCopy(argv: string[]): Promise<number> {
  const { flags, args } = parse(argv, ["backend"]);
  gate(flags, "backend", "2.0.0");
  const recursive = flags.has("r") || flags.has("recursive");
  if (args.length < 2) throw new UsageError(`requires at least 2 arg(s), only received ${args.length}`);
  const eps = args.map(endpoint);
  const remote = eps.filter((e) => e.instance);
  if (!remote.length) fatal("either the source or the destination must be an instance (NAME:PATH)");
  const inst = running(remote[0]!.instance!);
  if (!sshUp(inst)) sshRefused(inst);
  await ensureMaster(inst);
  const guestSh = (script: string) => sshSession(inst, script).map(shellQuote).join(" ");
  const want = (flags.get("backend") as string | undefined) ?? (versionGE(EMU_VERSION, "2.0.0") ? "auto" : "scp");
  const guestRsync = run(sshSession(inst, "command -v rsync")).code === 0;
  let backend: "rsync" | "scp";
  if (want === "rsync") {
    if (!guestRsync) fatal("rsync not available on guest(s)");
    backend = "rsync";
  } else if (want === "auto" || want === "scp") backend = want === "auto" && guestRsync ? "rsync" : "scp";
  else fatal(`invalid backend ${q(want)}, must be one of: scp, rsync, auto`);
  const dst = eps[eps.length - 1]!;
  const srcs = eps.slice(0, -1);
  // Guest paths: relative to the home (scp://u@h//abs strips one "/"; rsync the same).
  const side = (e: Endpoint) => ({ ...e, abs: e.instance ? (e.path.startsWith("/") ? e.path : `${inst.user.home}/${e.path || "."}`.replace(/\/\.$/, "")) : resolve(e.path) });
  if (backend === "rsync" && recursive) {
    // copytool/rsync.go: the trailing-slash rewrite, in order, over all paths.
    for (const [k, e] of eps.entries()) {
      if (e.path.endsWith("/")) {
        if (e.instance) for (const [j, o] of eps.entries()) if (j !== k) o.path = o.path.replace(/\/+$/, "");
        else e.path = e.path.replace(/\/+$/, "");
      } else e.path += "/";
    }
  }
  const D = side(dst);
  const test = (e: ReturnType<typeof side>, op: string) => (e.instance ? run(sshSession(inst, `test ${op} ${shellQuote(e.abs)}`)).code === 0 : run(["test", op, e.abs]).code === 0);
  for (const s of srcs) {
    const S = side(s);
    if (!!S.instance === !!D.instance) fatal(S.instance ? "copying between instances is not supported by the emulator" : "either the source or the destination must be an instance (NAME:PATH)");
    const label = `${s.instance ? `${s.instance}:` : ""}${s.path}`;
    if (!test(S, "-e")) {
      process.stderr.write(`${backend}: ${label}: No such file or directory\n`);
      fatal(`exit status 1`);
    }
    const isDir = test(S, "-d");
    let packContents = false;
    let mode: "into" | "as";
    let target = D.abs;
    if (backend === "scp") {
      if (isDir && !recursive) {
        process.stderr.write(`scp: ${label}: not a regular file\n`);
        fatal("exit status 1");
      }
      mode = test(D, "-d") ? "into" : "as";
    } else {
      const contents = isDir && s.path.endsWith("/");
      if (contents) {
        packContents = true;
        mode = "into";
      } else if (isDir) mode = "into";
      else mode = dst.path.endsWith("/") || srcs.length > 1 || test(D, "-d") ? "into" : "as";
    }
    const pack = S.instance ? guestSh(PACK(S.abs, packContents)) : `(${PACK(S.abs, packContents)})`;
    const unpack = D.instance ? guestSh(UNPACK(target, mode, basename(S.abs))) : `(${UNPACK(target, mode, basename(S.abs))})`;
    const p = Bun.spawn(["bash", "-c", `set -o pipefail; ${pack} | ${unpack}`], { stdin: "ignore", stdout: "inherit", stderr: "inherit" });
    const code = await p.exited;
    if (code !== 0) fatal(`failed to run ${backend} (copy ${label} → ${dst.instance ? `${dst.instance}:` : ""}${dst.path}): exit status ${code}`);
  }
  return 0;
}

function cmdValidate(argv: string[]): number {
  const { args } = parse(argv, []);
  for (const f of args) {
    validateProfile(loadProfile(f), limaUser(EMU_VERSION));
    info(`${q(f)}: OK`);
  }
  return 0;
}

const HELP = `limactl (emulator for Linux test machines: systemd-nspawn guests; models Lima ${EMU_VERSION})

Usage: limactl COMMAND [flags]
  create [--name NAME] FILE.yaml     create an instance
  start [--tty=false] [--name NAME] [--timeout 10m] [--progress] FILE.yaml | NAME
  stop [-f] NAME
  delete [-f] NAME...
  list [NAME...] [--json | --format json | --format '{{.Status}}' | -q]
  shell [--workdir DIR] [--shell SH] [--reconnect] NAME [COMMAND...]
  copy [-r] [--backend auto|rsync|scp] SRC... DST   (NAME:PATH on either side)
  validate FILE.yaml
  --version`;

async function main(argv: string[]): Promise<number> {
  // Global flags cobra accepts anywhere; the emulator ignores them.
  argv = argv.filter((a) => !["--debug", "--tty=false", "--tty=true", "--tty", "-y", "--yes", "--progress"].includes(a) && !a.startsWith("--log-level"));
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case "--version":
    case "-v":
    case "version":
      process.stdout.write(`limactl version ${EMU_VERSION}\n`);
      return 0;
    case undefined:
    case "help":
    case "-h":
    case "--help":
      process.stdout.write(HELP + "\n");
      return 0;
    case "create":
      return await cmdCreate(rest, false);
    case "start":
      return await cmdCreate(rest, true);
    case "stop":
      return await cmdStop(rest);
    case "delete":
    case "rm":
    case "remove":
      return await cmdDelete(rest);
    case "list":
    case "ls":
      return cmdList(rest);
    case "shell":
      return await cmdShell(rest);
    case "copy":
    case "cp":
      return await cmdCopy(rest);
    case "validate":
      return cmdValidate(rest);
    default:
      throw new UsageError(`unknown command ${JSON.stringify(cmd)} for "limactl"`);
  }
}

if (import.meta.main) {
  try {
    process.exitCode = await main(process.argv.slice(2));
  } catch (e) {
    if (e instanceof FatalError || e instanceof UsageError) {
      process.stderr.write(`FATA[0000] ${e.message}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`FATA[0000] internal error in the limactl emulator: ${(e as Error).stack ?? e}\n`);
      process.exitCode = 1;
    }
  }
}
