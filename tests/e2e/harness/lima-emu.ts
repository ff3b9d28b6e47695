/**
 * A `limactl` emulator for Linux test machines (see docs/dev/lima_guest_harness.md).
 *
 * Real Lima cannot run here (no macOS, no usable VM), so an "instance" is a Debian
 * rootfs booted with systemd as PID 1 inside `systemd-nspawn`. The guest is real (its
 * systemd, socket activation, groups and sshd); only the VM boundary is emulated. The
 * CLI mirrors what the product observes of Lima: `list --json` (one object per line),
 * `start`/`stop`/`delete` semantics and messages, `shell` (same quoting script as
 * Lima's), `copy` as the default user, and a Lima-style `ssh.config`.
 *
 * Layout, like Lima's: $LIMA_HOME (default ~/.lima) / NAME / { lima.yaml, ssh.config,
 * ha.pid, serial.log, id_ed25519[.pub], emu.json (process identities), rootfs/ }.
 *
 * Traps (measured on Debian 12, hybrid cgroups, no systemd on the host):
 * - nspawn needs `--register=no --keep-unit` without a host systemd, and its own cgroup
 *   (name=systemd and unified) or the guest's systemd takes over the caller's cgroup.
 * - Killing nspawn alone orphans the guest: a forced stop SIGKILLs the guest's PID 1.
 * - Processes are identified by pid + start time, never by name.
 * - nspawn's default seccomp filter denies Landlock; a real VM has it, so it is allowed.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmdirSync, rmSync, statSync, writeFileSync, copyFileSync, chmodSync, chownSync } from "node:fs";
import { createServer, connect } from "node:net";
import { homedir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";

const HERE = dirname(Bun.fileURLToPath(import.meta.url));
const EMU_VERSION = "1.0.0";
const GUEST_USER = "lima";
const GUEST_UID = 1000;
const GUEST_HOME = "/home/lima.linux";
const GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const CGROUP_ROOTS = ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"];
const BOOT_TIMEOUT_MS = Number(process.env.LIMA_EMU_BOOT_TIMEOUT_MS ?? 90_000);
const STOP_TIMEOUT_MS = Number(process.env.LIMA_EMU_STOP_TIMEOUT_MS ?? 60_000);

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

/** Go's al.essio.dev/pkg/shellescape.Quote, which Lima uses for `shell`. */
export function shellQuote(s: string): string {
  if (s === "") return "''";
  if (!/[^\w@%+=:,./-]/.test(s)) return s;
  return "'" + s.replaceAll("'", `'"'"'`) + "'";
}

function run(argv: string[], opts: { stdin?: "inherit" | "ignore" } = {}) {
  const r = Bun.spawnSync(argv, { stdin: opts.stdin ?? "ignore", stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? 1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
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
  // socat was started in its own session: its pgid is its pid, and its per-connection
  // children share that group.
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

interface EmuState {
  nspawn: ProcId;
  guest: ProcId;
  socat: ProcId | null;
  sshLocalPort: number;
  /** Lima `portForwards` guestSocket → hostSocket forwarders (socat, own session each). */
  forwards?: { proc: ProcId; hostSocket: string }[];
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
  writeFileSync(join(dir, "ha.pid"), `${st.nspawn.pid}\n`);
}
function clearState(dir: string): void {
  rmSync(join(dir, "emu.json"), { force: true });
  rmSync(join(dir, "ha.pid"), { force: true });
  rmSync(join(dir, "ssh.config"), { force: true });
  rmSync(join(dir, "ssh-proxy.sh"), { force: true });
  rmSync(join(dir, "ssh.master"), { force: true });
  for (const f of readdirSync(dir)) if (f.startsWith("socket-forward-") || f === "relay.py") rmSync(join(dir, f), { force: true });
}

function hostArch(): string {
  return process.arch === "arm64" ? "aarch64" : "x86_64";
}

function loadProfile(file: string): Profile {
  let raw: Record<string, unknown>;
  try {
    raw = (Bun.YAML.parse(readFileSync(file, "utf8")) ?? {}) as Record<string, unknown>;
  } catch (e) {
    fatal(`failed to load YAML file ${JSON.stringify(file)}: ${(e as Error).message}`);
  }
  if (typeof raw !== "object" || Array.isArray(raw)) fatal(`failed to load YAML file ${JSON.stringify(file)}: not a mapping`);
  const str = (v: unknown, d: string) => (typeof v === "string" || typeof v === "number" ? String(v) : d);
  const arch = str(raw.arch, "default");
  return {
    vmType: str(raw.vmType, "qemu"),
    arch: arch === "default" ? hostArch() : arch,
    cpus: typeof raw.cpus === "number" ? raw.cpus : 4,
    memory: str(raw.memory, "4GiB"),
    disk: str(raw.disk, "100GiB"),
    mounts: Array.isArray(raw.mounts) ? raw.mounts : [],
    raw,
  };
}

/** docker/go-units RAMInBytes: "2GiB", "4G", "512MiB" → bytes (binary multiples). */
function ramInBytes(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$/i.exec(s);
  if (!m) return 0;
  const pow = " kmgtp".indexOf(m[2]!.toLowerCase() || " ");
  return Math.round(Number(m[1]) * 1024 ** Math.max(pow, 0));
}

type Status = "Running" | "Stopped" | "Broken";
interface Inspected {
  name: string;
  dir: string;
  status: Status;
  state: EmuState | null;
  profile: Profile | null;
  errors: string[];
}

function exists(name: string): boolean {
  return existsSync(join(instDir(name), "lima.yaml"));
}

function inspect(name: string): Inspected {
  const dir = instDir(name);
  const errors: string[] = [];
  let profile: Profile | null = null;
  try {
    profile = loadProfile(join(dir, "lima.yaml"));
  } catch (e) {
    errors.push((e as Error).message);
  }
  const state = readState(dir);
  let status: Status;
  if (!existsSync(join(dir, "rootfs", "sbin", "init"))) {
    status = "Broken";
    errors.push("guest root filesystem is missing or incomplete");
  } else if (!state) {
    status = "Stopped";
  } else {
    const n = alive(state.nspawn);
    const g = alive(state.guest);
    if (n && g) status = "Running";
    else if (!n && !g) status = "Stopped"; // stale state: cleaned by the next start/stop
    else {
      status = "Broken";
      errors.push(n ? "systemd-nspawn is running but the guest init is not" : "guest init is running but systemd-nspawn is not");
    }
  }
  if (errors.length && profile === null) status = "Broken";
  return { name, dir, status, state, profile, errors };
}

function instanceJson(i: Inspected): Record<string, unknown> {
  const p = i.profile;
  const running = i.status === "Running" && i.state;
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
    hostAgentPID: running ? i.state!.nspawn.pid : 0,
    driverPID: running ? i.state!.guest.pid : 0,
    config: p?.raw ?? {},
    protected: false,
    limaVersion: EMU_VERSION,
    HostOS: "linux",
    HostArch: hostArch(),
    LimaHome: limaHome(),
    IdentityFile: join(i.dir, "id_ed25519"),
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

function installIdentity(dir: string): void {
  const key = join(dir, "id_ed25519");
  if (!existsSync(key)) {
    const r = run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lima-emu", "-f", key]);
    if (r.code !== 0) fatal(`ssh-keygen failed: ${r.stderr.trim()}`);
  }
  const sshDir = join(dir, "rootfs", GUEST_HOME.slice(1), ".ssh");
  mkdirSync(sshDir, { recursive: true });
  chownSync(sshDir, GUEST_UID, GUEST_UID);
  chmodSync(sshDir, 0o700);
  const ak = join(sshDir, "authorized_keys");
  copyFileSync(`${key}.pub`, ak);
  chownSync(ak, GUEST_UID, GUEST_UID);
  chmodSync(ak, 0o600);
}

// ---------------------------------------------------------------- boot / stop

function guestExec(guest: ProcId, argv: string[]) {
  return run(["nsenter", "-t", String(guest.pid), "-m", "-p", "--", ...argv]);
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

function writeSshConfig(name: string, dir: string, port: number): void {
  // Same keys Lima writes (hostagent's ssh.config), pointing at this instance's identity.
  const text = `# This SSH config file can be passed to 'ssh -F'.
# This file is created by Lima (emulator: tests/e2e/harness), but not used by Lima itself currently.
# Modifications to this file will be lost on restarting the Lima instance.
Host lima-${name}
  IdentityFile "${join(dir, "id_ed25519")}"
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  NoHostAuthenticationForLocalhost yes
  GSSAPIAuthentication no
  PreferredAuthentications publickey
  Compression no
  BatchMode yes
  IdentitiesOnly yes
  Ciphers "^aes128-gcm@openssh.com,aes256-gcm@openssh.com"
  User ${GUEST_USER}
  ControlMaster auto
  ControlPath "${join(dir, "ssh.sock")}"
  ControlPersist yes
  Hostname 127.0.0.1
  Port ${port}
`;
  writeFileSync(join(dir, "ssh.config"), text);
}

async function boot(name: string): Promise<void> {
  const dir = instDir(name);
  const rootfs = join(dir, "rootfs");
  await removeCgroups(name);
  for (const root of CGROUP_ROOTS) mkdirSync(join(root, cgroupName(name)), { recursive: true });
  installIdentity(dir);
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
      ...bindArgs(dir),
    ],
    { detached: true, stdin: "ignore", stdout: log, stderr: log },
  );
  child.unref();
  closeSync(log);
  const nspawn = procId(child.pid);
  let guest: ProcId | null = null;
  let socat: ProcId | null = null;
  const failBoot = async (why: string): Promise<never> => {
    await teardown(name, { nspawn: nspawn!, guest: guest ?? { pid: 0, start: "" }, socat, sshLocalPort: 0 }, true);
    clearState(dir);
    let tail = "";
    try {
      tail = readFileSync(join(dir, "serial.log"), "utf8").trim().split("\n").slice(-15).join("\n");
    } catch {}
    fatal(`${why}${tail ? `\n--- ${join(dir, "serial.log")} (tail) ---\n${tail}` : ""}`);
  };
  if (!nspawn) return failBoot("systemd-nspawn exited immediately");

  const deadline = Date.now() + BOOT_TIMEOUT_MS;
  // The guest's PID 1 is nspawn's child whose NSpid ends in 1 (pid 1 in its namespace).
  while (!guest) {
    if (!alive(nspawn)) return failBoot("systemd-nspawn exited during boot");
    if (Date.now() > deadline) return failBoot("guest init did not appear");
    let kids: string[] = [];
    try {
      kids = readFileSync(`/proc/${nspawn.pid}/task/${nspawn.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
    } catch {}
    for (const k of kids) {
      try {
        const nspid = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${k}/status`, "utf8"))?.[1]?.trim().split(/\s+/);
        if (nspid && nspid.length > 1 && nspid[nspid.length - 1] === "1") guest = procId(Number(k));
      } catch {}
    }
    if (!guest) await sleep(20);
  }
  const g = guest as ProcId;
  writeState(dir, { nspawn, guest: g, socat: null, sshLocalPort: 0 });

  let state = "";
  for (;;) {
    if (!alive(nspawn) || !alive(g)) return failBoot("the guest stopped during boot");
    state = guestExec(g, ["systemctl", "is-system-running"]).stdout.trim();
    if (state === "running" || state === "degraded") break;
    if (Date.now() > deadline) return failBoot(`guest did not finish booting in ${BOOT_TIMEOUT_MS} ms (state: ${state || "unknown"})`);
    await sleep(100);
  }

  // SSH: a loopback port on the host forwarded into the guest's private netns.
  const port = Number((profileSsh(dir).localPort as number | undefined) || 0) || (await freePort());
  // socat splits EXEC's command line on ':' (the address syntax), so the inner
  // `TCP:127.0.0.1:22` lives in a tiny script instead.
  const proxy = join(dir, "ssh-proxy.sh");
  writeFileSync(proxy, `#!/bin/sh\nexec nsenter -t ${g.pid} -n socat STDIO TCP:127.0.0.1:22\n`, { mode: 0o755 });
  const sshLog = openSync(join(dir, "ssh.forward.log"), "w");
  const socatProc = Bun.spawn(
    [
      "socat",
      ...(process.env.LIMA_EMU_DEBUG ? ["-d", "-d"] : []),
      `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`,
      `EXEC:${proxy}`,
    ],
    { detached: true, stdin: "ignore", stdout: "ignore", stderr: sshLog },
  );
  closeSync(sshLog);
  socatProc.unref();
  socat = procId(socatProc.pid);
  writeState(dir, { nspawn, guest: g, socat, sshLocalPort: port });
  for (;;) {
    if (!alive(socat)) return failBoot(`ssh forwarder (socat on 127.0.0.1:${port}) exited; is the port in use?`);
    if (await sshBanner(port)) break;
    if (Date.now() > deadline) return failBoot("sshd in the guest did not answer");
    await sleep(100);
  }
  writeSshConfig(name, dir, port);
  const forwards = startSocketForwards(name, dir, g);
  writeState(dir, { nspawn, guest: g, socat, sshLocalPort: port, forwards });
  if (state === "degraded") {
    const failed = guestExec(g, ["systemctl", "--failed", "--no-legend", "--plain"]).stdout.trim();
    warn(`guest booted degraded; failed units:\n${failed}`);
  }
}

/** Paths of the guest system that a host mount must never shadow. */
const SYSTEM_DIRS = new Set(["/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/proc", "/root", "/run", "/sbin", "/sys", "/tmp", "/usr", "/var", GUEST_HOME]);

/**
 * The profile's `mounts:` as nspawn bind mounts (virtiofs stand-in): same path in the
 * guest unless `mountPoint` says otherwise, read-only unless `writable: true` (Lima's
 * default). "~" is the host user's home. A mount that would shadow a guest system
 * directory (e.g. "~" = /root when tests run as root) is skipped with a warning.
 */
function bindArgs(dir: string): string[] {
  let mounts: unknown[] = [];
  try {
    mounts = loadProfile(join(dir, "lima.yaml")).mounts;
  } catch {}
  const out: string[] = [];
  const expand = (p: string) => (p === "~" ? homedir() : p.startsWith("~/") ? join(homedir(), p.slice(2)) : p);
  for (const m of mounts) {
    if (!m || typeof m !== "object") continue;
    const { location, mountPoint, writable } = m as { location?: unknown; mountPoint?: unknown; writable?: unknown };
    if (typeof location !== "string") continue;
    const src = resolve(expand(location));
    const dst = typeof mountPoint === "string" && mountPoint ? resolve(expand(mountPoint)) : src;
    if (SYSTEM_DIRS.has(dst)) {
      warn(`mount ${location} → ${dst} skipped: it would shadow the guest's ${dst}`);
      continue;
    }
    if (!existsSync(src)) {
      warn(`mount ${location} skipped: ${src} does not exist on the host`);
      continue;
    }
    if (src.includes(":") || dst.includes(":")) {
      warn(`mount ${location} skipped: nspawn cannot bind paths containing ':'`);
      continue;
    }
    out.push(`${writable === true ? "--bind" : "--bind-ro"}=${src}:${dst}`);
  }
  return out;
}

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
/** A byte relay between stdio and a unix socket, run in the guest as the default user
 * (the guest has python3; the host's socat is not visible inside its mount namespace). */
const RELAY_PY = `import os, select, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
i, o = sys.stdin.fileno(), sys.stdout.fileno()
fds = [i, s]
while fds:
    r, _, _ = select.select(fds, [], [])
    if i in r:
        d = os.read(i, 65536)
        if d:
            s.sendall(d)
        else:
            s.shutdown(socket.SHUT_WR)
            fds.remove(i)
    if s in r:
        d = s.recv(65536)
        if not d:
            break
        while d:
            d = d[os.write(o, d):]
`;

/**
 * Lima >= 1.0 `portForwards: [{guestSocket, hostSocket}]`: the host socket appears once the
 * instance runs; each connection reaches the guest socket AS THE DEFAULT USER (Lima goes
 * through its SSH master, so with LIMA_EMU_SSH_MASTER the master's old groups apply).
 * Templates {{.Dir}}, {{.Name}}, {{.Home}} are expanded like Lima's.
 */
function startSocketForwards(name: string, dir: string, g: ProcId): { proc: ProcId; hostSocket: string }[] {
  let list: unknown[] = [];
  try {
    const pf = loadProfile(join(dir, "lima.yaml")).raw.portForwards;
    if (Array.isArray(pf)) list = pf;
  } catch {}
  const out: { proc: ProcId; hostSocket: string }[] = [];
  writeFileSync(join(dir, "relay.py"), RELAY_PY);
  let n = 0;
  for (const f of list) {
    const { guestSocket, hostSocket } = (f ?? {}) as { guestSocket?: unknown; hostSocket?: unknown };
    if (typeof guestSocket !== "string" || typeof hostSocket !== "string") continue;
    const host = hostSocket.replaceAll("{{.Dir}}", dir).replaceAll("{{.Name}}", name).replaceAll("{{.Home}}", homedir());
    if (host.includes(":") || host.includes(",")) {
      warn(`portForwards hostSocket ${host} skipped: socat cannot take ':' or ','`);
      continue;
    }
    mkdirSync(dirname(host), { recursive: true });
    rmSync(host, { force: true });
    const script = join(dir, `socket-forward-${n++}.sh`);
    const enter = `nsenter -t ${g.pid} -a -- env -i PATH=${GUEST_PATH} HOME=${GUEST_HOME} USER=${GUEST_USER} LOGNAME=${GUEST_USER}`;
    const relay = `python3 -c "$(cat ${shellQuote(join(dir, "relay.py"))})" ${shellQuote(guestSocket)}`;
    writeFileSync(
      script,
      `#!/bin/sh
# Generated by the limactl emulator: one connection of the ${host} → ${guestSocket} forward.
if [ -f ${shellQuote(join(dir, "ssh.master"))} ]; then
  exec ${enter} setpriv --reuid=${GUEST_UID} --regid=${GUEST_UID} --groups="$(cat ${shellQuote(join(dir, "ssh.master"))})" -- ${relay}
fi
exec ${enter} runuser -u ${GUEST_USER} -- ${relay}
`,
      { mode: 0o755 },
    );
    const p = Bun.spawn(["socat", `UNIX-LISTEN:${host},fork,unlink-early`, `EXEC:${script}`], { detached: true, stdin: "ignore", stdout: "ignore", stderr: "ignore" });
    p.unref();
    const id = procId(p.pid);
    if (id) out.push({ proc: id, hostSocket: host });
  }
  return out;
}

async function teardown(name: string, st: EmuState, force: boolean): Promise<void> {
  for (const f of st.forwards ?? []) {
    signalGroup(f.proc, "SIGKILL");
    await waitGone(f.proc, 5_000);
    rmSync(f.hostSocket, { force: true });
  }
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

function requireInstance(name: string): Inspected {
  if (!exists(name)) fatal(`instance ${JSON.stringify(name)} does not exist, run \`limactl create ${name}\` to create a new instance`);
  return inspect(name);
}

function validName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) || name.length > 60) fatal(`invalid instance name ${JSON.stringify(name)}`);
}

async function cmdCreate(argv: string[], andStart: boolean): Promise<number> {
  const { flags, args } = parse(argv, ["name", "timeout", "set", "cpus", "memory", "disk", "vm-type", "arch"]);
  let name = typeof flags.get("name") === "string" ? (flags.get("name") as string) : "";
  const target = args[0];
  // `limactl start NAME` (existing instance) vs `limactl start [--name N] FILE.yaml`.
  const isFile = target !== undefined && (target.endsWith(".yaml") || target.endsWith(".yml") || target.includes("/") || target === "-");
  if (andStart && target !== undefined && !isFile && !name) {
    if (exists(target)) return await startExisting(target);
    name = target;
  }
  if (!name) name = target && isFile ? basename(target).replace(/\.ya?ml$/, "") : target ?? "default";
  validName(name);
  const dir = instDir(name);
  if (exists(name)) {
    if (!isFile && andStart) return await startExisting(name);
    fatal(`instance ${JSON.stringify(name)} already exists (${dir})`);
  }
  let yamlText: string;
  if (target && isFile) {
    try {
      yamlText = target === "-" ? await Bun.stdin.text() : readFileSync(target, "utf8");
    } catch (e) {
      fatal(`failed to read ${JSON.stringify(target)}: ${(e as Error).message}`);
    }
  } else yamlText = "# default template (emulator)\nvmType: qemu\n";
  mkdirSync(dir, { recursive: true });
  try {
    const tmp = join(dir, "lima.yaml.tmp");
    writeFileSync(tmp, yamlText);
    loadProfile(tmp); // validate before committing to it
    info("Creating an instance (emulated: Debian bookworm in systemd-nspawn)");
    const image = guestImage();
    unpack(image, join(dir, "rootfs"));
    setGuestHostname(join(dir, "rootfs"), `lima-${name}`);
    // Persistent journal: after a guest dies, `journalctl -D DIR/rootfs/var/log/journal` tells why.
    mkdirSync(join(dir, "rootfs", "var/log/journal"), { recursive: true });
    writeFileSync(join(dir, "lima.yaml"), yamlText);
    rmSync(tmp, { force: true });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  if (!andStart) {
    info(`Run \`limactl start ${name}\` to start the instance.`);
    return 0;
  }
  return await startExisting(name);
}

async function startExisting(name: string): Promise<number> {
  const i = inspect(name);
  if (i.status === "Running") {
    warn(`The instance ${JSON.stringify(name)} is already running. Run \`limactl shell ${name}\` to open the shell.`);
    return 0;
  }
  if (i.status === "Broken") fatal(`instance ${JSON.stringify(name)} is broken: ${i.errors.join("; ")}; run \`limactl delete -f ${name}\` and create it again`);
  if (i.state) await teardown(name, i.state, true); // stale state from an unclean exit
  clearState(i.dir);
  info(`Starting the instance ${JSON.stringify(name)} with VM driver "nspawn (emulating ${i.profile?.vmType ?? "qemu"})"`);
  const t0 = performance.now();
  await boot(name);
  info(`READY. Run \`limactl shell ${name}\` to open the shell. (booted in ${Math.round(performance.now() - t0)} ms)`);
  return 0;
}

async function cmdStop(argv: string[]): Promise<number> {
  const { flags, args } = parse(argv, []);
  const force = flags.has("f") || flags.has("force");
  const name = args[0] ?? "default";
  const i = requireInstance(name);
  if (i.status !== "Running" && !force) fatal(`expected status "Running", got ${JSON.stringify(i.status)} (maybe use \`limactl stop -f\`?)`);
  info(`Sending SIG${force ? "KILL" : "TERM"} to the instance ${JSON.stringify(name)}`);
  if (i.state) await teardown(name, i.state, force);
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
      fatal(`unable to delete instance ${JSON.stringify(name)}: instance ${JSON.stringify(name)} does not exist`);
    }
    const i = inspect(name);
    if (i.status === "Running" && !force) fatal(`instance ${JSON.stringify(name)} is running, run \`limactl stop ${name}\` to stop the instance`);
    if (i.state) await teardown(name, i.state, true);
    await removeCgroups(name);
    const m = mountsUnder(i.dir);
    if (m.length) fatal(`refusing to delete ${i.dir}: still mounted: ${m.join(", ")}`);
    rmSync(i.dir, { recursive: true, force: true });
    info(`Deleted ${JSON.stringify(name)} (${JSON.stringify(i.dir)})`);
  }
  return 0;
}

function listNames(): string[] {
  try {
    return readdirSync(limaHome(), { withFileTypes: true })
      .filter((e) => e.isDirectory() && !e.name.startsWith("_") && exists(e.name))
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

function running(name: string): Inspected & { state: EmuState } {
  const i = requireInstance(name);
  if (i.status !== "Running" || !i.state) fatal(`instance ${JSON.stringify(name)} is ${i.status.toLowerCase()}, run \`limactl start ${name}\` to start the instance`);
  return i as Inspected & { state: EmuState };
}

/** argv that runs SCRIPT as the default user through a login, inside the guest. */
/**
 * Lima runs `shell` and `copy` through a persistent SSH master (ControlPersist): a group
 * added in the guest after the master connected is NOT in later sessions until `limactl
 * shell --reconnect` (or a restart). With LIMA_EMU_SSH_MASTER=1 the emulator reproduces
 * that: the first session records the user's groups in DIR/ssh.master and later sessions
 * run with exactly those (setpriv instead of a fresh PAM login). Off by default.
 */
function masterGroups(i: Inspected & { state: EmuState }): string | null {
  if (process.env.LIMA_EMU_SSH_MASTER !== "1") return null;
  const f = join(i.dir, "ssh.master");
  try {
    return readFileSync(f, "utf8").trim();
  } catch {}
  const r = run(["nsenter", "-t", String(i.state.guest.pid), "-a", "--", "id", "-G", GUEST_USER]);
  if (r.code !== 0) fatal(`cannot read the groups of ${GUEST_USER}: ${r.stderr.trim()}`);
  const gids = r.stdout.trim().split(/\s+/).join(",");
  writeFileSync(f, `${gids}\n`);
  return gids;
}

function asGuestUser(guest: ProcId, script: string, gids: string | null = null): string[] {
  const enter = ["nsenter", "-t", String(guest.pid), "-a", "--", "env", "-i", `PATH=${GUEST_PATH}`];
  if (gids === null) return [...enter, "runuser", "-l", GUEST_USER, "-c", script];
  return [
    ...enter,
    `HOME=${GUEST_HOME}`,
    "SHELL=/bin/bash",
    `USER=${GUEST_USER}`,
    `LOGNAME=${GUEST_USER}`,
    "setpriv",
    `--reuid=${GUEST_UID}`,
    `--regid=${GUEST_UID}`,
    `--groups=${gids}`,
    "--",
    "/bin/bash",
    "-c",
    `cd ~ && ${script}`,
  ];
}

async function cmdShell(argv: string[]): Promise<number> {
  const { flags, args } = parse(argv, ["shell", "workdir"], false);
  let rest = args;
  if (rest.length >= 2 && rest[1] === "--") rest = [rest[0]!, ...rest.slice(2)];
  const name = rest[0];
  if (!name) throw new UsageError("requires at least 1 arg(s), only received 0");
  const i = running(name);
  // Same script as Lima's shellAction: there is no host mount in the emulator, which is
  // Lima's "host home does not seem mounted" branch (changeDirCmd = "false").
  const workdir = flags.get("workdir");
  const changeDir = typeof workdir === "string" && workdir ? `cd ${shellQuote(workdir)} || exit 1` : "false";
  const sh = typeof flags.get("shell") === "string" ? shellQuote(flags.get("shell") as string) : `"$SHELL"`;
  let script = `${changeDir} ; exec ${sh} --login`;
  if (rest.length > 1) {
    let parsingEnv = true;
    const quoted = rest.slice(1).map((a) => {
      if (parsingEnv && a.split("=").length > 1) {
        const k = a.indexOf("=");
        return `${a.slice(0, k)}=${shellQuote(a.slice(k + 1))}`;
      }
      parsingEnv = false;
      return shellQuote(a);
    });
    script += ` -c ${shellQuote(quoted.join(" "))}`;
  }
  if (flags.has("reconnect")) rmSync(join(i.dir, "ssh.master"), { force: true });
  const p = Bun.spawn(asGuestUser(i.state.guest, script, masterGroups(i)), { stdin: "inherit", stdout: "inherit", stderr: "inherit" });
  const fwd = (s: NodeJS.Signals) => () => p.kill(s);
  process.on("SIGTERM", fwd("SIGTERM"));
  process.on("SIGINT", fwd("SIGINT"));
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
    if (exists(inst)) return { instance: inst, path: s.slice(k + 1) || "." };
  }
  return { instance: null, path: s };
}

/**
 * tar-based copy with scp's observable rules: DST an existing directory → copy into it,
 * otherwise SRC becomes DST; directories need -r; guest side runs as the default user
 * (so /usr/local/bin is not writable — exactly as on a real Lima VM), relative guest
 * paths are under its home.
 */
const EXTRACT = (dst: string, name: string, ownerFlags: string) => `
dst=${shellQuote(dst)}; name=${shellQuote(name)}
if [ -d "$dst" ]; then exec tar -xf - ${ownerFlags} -C "$dst"; fi
parent=$(dirname -- "$dst")
tmp=$(mktemp -d "$parent/.lima-copy.XXXXXX") || exit 1
rc=0
tar -xf - ${ownerFlags} -C "$tmp" && mv -f -- "$tmp/$name" "$dst" || rc=1
rm -rf -- "$tmp"
exit $rc`;

async function cmdCopy(argv: string[]): Promise<number> {
  const { flags, args } = parse(argv, []);
  const recursive = flags.has("r") || flags.has("recursive");
  if (args.length < 2) throw new UsageError(`requires at least 2 arg(s), only received ${args.length}`);
  const dst = endpoint(args[args.length - 1]!);
  const srcs = args.slice(0, -1).map(endpoint);
  for (const src of srcs) {
    if (src.instance && dst.instance) fatal("copying between instances is not supported by the emulator");
    if (!src.instance && !dst.instance) fatal("either the source or the destination must be an instance (NAME:PATH)");
    const name = basename(src.path.replace(/\/+$/, "")) || src.path;
    if (dst.instance) {
      const i = running(dst.instance);
      const hostSrc = resolve(src.path);
      let st;
      try {
        st = statSync(hostSrc);
      } catch {
        fatal(`${src.path}: No such file or directory`);
      }
      if (st.isDirectory() && !recursive) fatal(`${src.path}: not a regular file (use -r)`);
      const guestCmd = asGuestUser(i.state.guest, EXTRACT(dst.path, basename(hostSrc), "--no-same-owner"), masterGroups(i))
        .map(shellQuote)
        .join(" ");
      const r = run(["bash", "-c", `set -o pipefail; tar -C ${shellQuote(dirname(hostSrc))} -cf - -- ${shellQuote(basename(hostSrc))} | ${guestCmd}`]);
      if (r.code !== 0) fatal(`failed to copy ${src.path} to ${dst.instance}:${dst.path}: ${r.stderr.trim()}`);
    } else {
      const i = running(src.instance!);
      const check = recursive ? "" : `[ -d "$src" ] && { echo "$src: not a regular file" >&2; exit 1; }; `;
      const pack = `src=${shellQuote(src.path)}; [ -e "$src" ] || { echo "$src: No such file or directory" >&2; exit 1; }; ${check}cd -- "$(dirname -- "$src")" && exec tar -cf - -- ${shellQuote(name)}`;
      const guestCmd = asGuestUser(i.state.guest, pack, masterGroups(i)).map(shellQuote).join(" ");
      const extract = EXTRACT(resolve(dst.path), name, "--no-same-owner");
      const r = run(["bash", "-c", `set -o pipefail; ${guestCmd} | (${extract})`]);
      if (r.code !== 0) fatal(`failed to copy ${src.instance}:${src.path} to ${dst.path}: ${r.stderr.trim()}`);
    }
  }
  return 0;
}

function cmdValidate(argv: string[]): number {
  const { args } = parse(argv, []);
  for (const f of args) {
    loadProfile(f);
    info(`${JSON.stringify(f)}: OK`);
  }
  return 0;
}

const HELP = `limactl (emulator for Linux test machines: systemd-nspawn guests)

Usage: limactl COMMAND [flags]
  create [--name NAME] FILE.yaml     create an instance
  start [--tty=false] [--name NAME] FILE.yaml | NAME
  stop [-f] NAME
  delete [-f] NAME...
  list [NAME...] [--json | --format json | --format '{{.Status}}' | -q]
  shell [--workdir DIR] [--shell SH] NAME [COMMAND...]
  copy [-r] SRC... DST               (NAME:PATH on either side)
  validate FILE.yaml
  --version`;

async function main(argv: string[]): Promise<number> {
  // Global flags cobra accepts anywhere; the emulator ignores them.
  argv = argv.filter((a) => !["--debug", "--tty=false", "--tty=true", "--tty", "-y", "--yes"].includes(a) && !a.startsWith("--log-level"));
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
