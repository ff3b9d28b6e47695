/**
 * Test helpers around the limactl emulator (./limactl, ./lima-emu.ts): build the guest
 * image once, create an instance in a private LIMA_HOME, and guarantee teardown — no
 * nspawn, socat, cgroups or instance directories left behind, even when a test throws
 * or the runner is interrupted.
 *
 *   await withGuest("substrate", async (g) => {
 *     const r = g.limactl(["shell", g.name, "uname", "-a"]);
 *   });
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { instanceKey } from "./lima-emu.ts";

export const HARNESS_DIR = import.meta.dir;
export const LIMACTL = join(HARNESS_DIR, "limactl");
const CGROUP_ROOT = "/sys/fs/cgroup";

/** A minimal Lima profile for harness-only tests (the product ships guest-assets/*.yaml).
 * The image location is never fetched: the emulator's "download" is local. */
export const TEST_PROFILE = `# harness test profile
vmType: vz
cpus: 2
memory: 2GiB
disk: 8GiB
images:
  - location: "https://emulator.invalid/debian-12-generic-${process.arch === "arm64" ? "arm64" : "amd64"}.qcow2"
    arch: "${process.arch === "arm64" ? "aarch64" : "x86_64"}"
mounts: []
`;

/**
 * Emulator settings for a guest used as a plain systemd Linux box rather than as a Lima VM
 * (tests/e2e/linux-systemd.test.ts): user `lima` with an old-style `/home/lima.linux` home (an
 * instance created by Lima 2.0) and a fresh login, with current groups, for every session.
 */
export const LINUX_BOX_ENV = { LIMA_EMU_MAC_USER: "lima", LIMA_EMU_MAC_UID: "1000", LIMA_EMU_VERSION: "2.0.1", LIMA_EMU_SSH_MASTER: "0" } as const;

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Builds (or finds the cached) guest image; ~60 s once per machine. Returns its path. */
export function ensureGuestImage(): string {
  const r = Bun.spawnSync(["bash", join(HARNESS_DIR, "build-guest.sh")], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`build-guest.sh failed (exit ${r.exitCode}):\n${r.stderr.toString()}`);
  return r.stdout.toString().trim().split("\n").pop()!;
}

/** Environment in which `limactl` is the emulator and instances live in `limaHome`. */
export function harnessEnv(limaHome: string, base: Record<string, string | undefined> = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (v !== undefined) env[k] = v;
  env.PATH = `${HARNESS_DIR}:${env.PATH ?? "/usr/bin:/bin"}`;
  env.LIMA_HOME = limaHome;
  // Lima's image cache (os.UserCacheDir()/lima) stays inside the test's own directory.
  env.XDG_CACHE_HOME = join(limaHome, "_cache");
  return env;
}

export interface SshEndpoint {
  host: string;
  port: number;
  user: string;
  identityFile: string;
}

/** Reads the fields a client needs from a Lima ssh.config (the `Host lima-NAME` block). */
export function parseSshConfig(text: string): SshEndpoint {
  const get = (k: string) => new RegExp(`^\\s*${k}\\s+"?([^"\\n]+?)"?\\s*$`, "mi").exec(text)?.[1];
  const port = Number(get("Port"));
  const user = get("User");
  const identityFile = get("IdentityFile");
  if (!port || !user || !identityFile) throw new Error(`incomplete ssh.config:\n${text}`);
  return { host: get("Hostname") ?? "127.0.0.1", port, user, identityFile };
}

export interface Guest {
  name: string;
  limaHome: string;
  /** The instance directory ($LIMA_HOME/NAME). */
  dir: string;
  env: Record<string, string>;
  /** Runs the emulator synchronously with this guest's environment. */
  limactl(args: string[], opts?: { stdin?: string }): RunResult;
  /** `limactl shell NAME ...args`, throwing on a non-zero exit. */
  sh(...args: string[]): string;
  /** The parsed `limactl list NAME --json` object. */
  info(): Record<string, unknown>;
  ssh(): SshEndpoint;
}

interface Recorded {
  pids: { pid: number; start: string }[];
  port: number;
}

const live = new Set<Guest>();

function makeGuest(name: string, limaHome: string, extraEnv: Record<string, string> = {}): Guest {
  const env = { ...harnessEnv(limaHome), ...extraEnv };
  const dir = join(limaHome, name);
  const limactl = (args: string[], opts: { stdin?: string } = {}): RunResult => {
    const r = Bun.spawnSync([LIMACTL, ...args], {
      env,
      stdin: opts.stdin === undefined ? "ignore" : new TextEncoder().encode(opts.stdin),
      stdout: "pipe",
      stderr: "pipe",
    });
    return { code: r.exitCode ?? 1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
  };
  return {
    name,
    limaHome,
    dir,
    env,
    limactl,
    sh(...args) {
      const r = limactl(["shell", name, ...args]);
      if (r.code !== 0) throw new Error(`limactl shell ${name} ${args.join(" ")} → exit ${r.code}\n${r.stderr}`);
      return r.stdout;
    },
    info() {
      const r = limactl(["list", name, "--json"]);
      if (r.code !== 0) throw new Error(`limactl list ${name} → exit ${r.code}: ${r.stderr}`);
      return JSON.parse(r.stdout.trim().split("\n")[0]!);
    },
    ssh() {
      return parseSshConfig(readFileSync(join(dir, "ssh.config"), "utf8"));
    },
  };
}

function recorded(g: Guest): Recorded {
  try {
    const st = JSON.parse(readFileSync(join(g.dir, "emu.json"), "utf8"));
    return { pids: [st.hostagent, st.nspawn, st.guest, st.socat, st.master].filter(Boolean), port: st.sshLocalPort ?? 0 };
  } catch {
    return { pids: [], port: 0 };
  }
}

/**
 * Creates and starts an instance in a fresh LIMA_HOME (or `opts.limaHome`).
 * `opts.profile` is YAML text (default TEST_PROFILE) or `{ file }` for a profile path.
 */
export function createGuest(name: string, opts: { profile?: string | { file: string }; limaHome?: string; start?: boolean; env?: Record<string, string> } = {}): Guest {
  ensureGuestImage();
  const limaHome = opts.limaHome ?? mkdtempSync(join(tmpdir(), "substrate-lima-"));
  const g = makeGuest(name, limaHome, opts.env);
  live.add(g);
  let file: string;
  if (typeof opts.profile === "object") file = opts.profile.file;
  else {
    file = join(limaHome, `${name}.profile.yaml`);
    writeFileSync(file, opts.profile ?? TEST_PROFILE);
  }
  const r = g.limactl([opts.start === false ? "create" : "start", "--tty=false", "--name", name, file]);
  if (r.code !== 0) {
    destroyGuest(g);
    throw new Error(`limactl start ${name} failed (exit ${r.code}):\n${r.stderr}`);
  }
  return g;
}

/** True while the process (pid + start time, so never a recycled pid) runs; zombies count as gone. */
export function procAlive(p: { pid: number; start: string }): boolean {
  try {
    const stat = readFileSync(`/proc/${p.pid}/stat`, "utf8");
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return rest[19] === p.start && rest[0] !== "Z" && rest[0] !== "X";
  } catch {
    return false;
  }
}

/**
 * A handle on an instance something else creates (e.g. `substrate world warm` with this
 * LIMA_HOME): registered for the same guaranteed teardown as createGuest's.
 */
export function adoptGuest(name: string, limaHome: string, extraEnv: Record<string, string> = {}): Guest {
  const g = makeGuest(name, limaHome, extraEnv);
  live.add(g);
  return g;
}

/** Everything this guest could leave behind; empty when clean. */
export function leftovers(g: Guest, rec: Recorded = recorded(g)): string[] {
  const out: string[] = [];
  for (const p of rec.pids) if (procAlive(p)) out.push(`process ${p.pid} still running`);
  for (const h of readdirSync(CGROUP_ROOT)) {
    const cg = `lima-emu-${instanceKey(g.name, g.dir)}`;
    if (existsSync(join(CGROUP_ROOT, h, cg))) out.push(`cgroup ${h}/${cg}`);
  }
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const mp = line.split(" ")[4];
    if (mp && mp.startsWith(g.limaHome + "/")) out.push(`mount ${mp}`);
  }
  if (rec.port) {
    const hex = rec.port.toString(16).toUpperCase().padStart(4, "0");
    const listening = readFileSync("/proc/net/tcp", "utf8")
      .split("\n")
      .some((l) => l.includes(`:${hex} `) && l.split(/\s+/)[4] === "0A");
    if (listening) out.push(`port 127.0.0.1:${rec.port} still listening`);
  }
  if (existsSync(g.dir)) out.push(`instance dir ${g.dir}`);
  return out;
}

/**
 * Force-deletes the instance and its LIMA_HOME; returns what was left behind afterwards
 * (empty when clean). Never throws: it runs from finally blocks and exit handlers.
 */
export function destroyGuest(g: Guest, opts: { keepHome?: boolean } = {}): string[] {
  const rec = recorded(g);
  const r = g.limactl(["delete", "-f", g.name]);
  live.delete(g);
  const left = leftovers(g, rec);
  if (r.code !== 0) left.push(`limactl delete -f failed: ${r.stderr.trim()}`);
  if (!opts.keepHome && left.length === 0) rmSync(g.limaHome, { recursive: true, force: true });
  return left;
}

/** Runs `fn` with a started guest; always tears it down and fails if anything is left. */
export async function withGuest<T>(
  name: string,
  fn: (g: Guest) => Promise<T> | T,
  opts: { profile?: string | { file: string }; env?: Record<string, string> } = {},
): Promise<T> {
  const g = createGuest(name, opts);
  let result: T;
  try {
    result = await fn(g);
  } finally {
    const left = destroyGuest(g);
    if (left.length) throw new Error(`guest ${name} left things behind: ${left.join("; ")}`);
  }
  return result;
}

// Safety net: an interrupted test run must not leave guests running.
function cleanupAll(): void {
  for (const g of [...live]) destroyGuest(g);
}
process.on("exit", cleanupAll);
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    cleanupAll();
    process.exit(130);
  });
}
