/**
 * A scripted HostSystem for unit tests: files, sockets, PATH entries, command outputs and
 * HTTP answers are data; every command run and every HTTP call is recorded so tests can prove
 * what the doctor did (and did not) touch.
 */
import type { CommandResult, HostSystem, HttpProbeResult } from "../../../src/doctor/system.ts";
import type { WorldSettings } from "../../../src/doctor/config.ts";
import type { DoctorPlatform } from "../../../src/contract/index.ts";
import { GUEST_PROBE_SCRIPT } from "../../../src/doctor/macos.ts";

export interface FakeSpec {
  platform: DoctorPlatform;
  env?: Record<string, string>;
  euid?: number;
  files?: Record<string, string>;
  dirs?: string[];
  sockets?: string[];
  bins?: string[];
  /** key: argv joined by spaces */
  commands?: Record<string, Partial<CommandResult>>;
  /** key: `${socket} ${route}` */
  http?: Record<string, Partial<HttpProbeResult>>;
  rebuild?: { phase: string; pid: number };
}

export interface FakeSystem extends HostSystem {
  ran: string[];
  fetched: string[];
}

export function fakeSystem(spec: FakeSpec): FakeSystem {
  const ran: string[] = [];
  const fetched: string[] = [];
  const files = spec.files ?? {};
  return {
    ran,
    fetched,
    platform: spec.platform,
    env: spec.env ?? {},
    euid: spec.euid ?? 0,
    home: "/home/tester",
    readText: (p) => files[p] ?? null,
    exists: (p) => p in files || (spec.dirs ?? []).includes(p) || (spec.sockets ?? []).includes(p),
    isSocket: (p) => (spec.sockets ?? []).includes(p),
    which: (c) => ((spec.bins ?? []).includes(c) ? `/usr/bin/${c}` : null),
    run: async (argv) => {
      const key = argv.join(" ");
      ran.push(key);
      const r = spec.commands?.[key];
      if (r === undefined) return { code: null, stdout: "", stderr: "", error: `ENOENT: ${argv[0]} (unscripted: ${key})` };
      return { code: 0, stdout: "", stderr: "", error: null, ...r };
    },
    limaRebuild: () => spec.rebuild ?? null,
    httpGetUnix: async (sock, route) => {
      const key = `${sock} ${route}`;
      fetched.push(key);
      const r = spec.http?.[key];
      if (r === undefined) return { ok: false, status: null, body: "", error: "ENOENT: no such socket" };
      return { ok: (r.status ?? 200) < 400, status: 200, body: "", error: null, ...r };
    },
  };
}

export const settings = (over: Partial<WorldSettings> = {}): WorldSettings => ({
  world_enabled: true,
  enabled_source: "default",
  fs_mode: "writable",
  fs_isolation: "workspace",
  require_world: false,
  socket_path: "/run/substrate.sock",
  ...over,
});

export const CAPABILITIES = {
  api_version: "v1",
  agent: { version: "0.1.0", commit: "abc1234", agent_hash: "sha256:00", target: "linux-x64" },
  kernel: "6.18.0",
  arch: "x64",
  backend: "linux-local",
  features: {
    namespaces: { mount: true, pid: true, uts: true, ipc: true, net: true, user: true },
    overlay: true,
    fuse_overlayfs: true,
    cgroup: "v2",
    nft: true,
    landlock: { supported: true, abi: 7 },
    seccomp: true,
    pty: true,
  },
  worlds: { active: 0, created: 0, reused: 0, executes: 0, reuse_ratio: 0 },
  uptime_ms: 1000,
};

export const WORLD_REPORT_OK = {
  schema_version: 1,
  ok: true,
  collected_at_utc: "2026-01-08T00:00:00Z",
  landlock: { supported: true, abi: 3, reason: null },
  world_fs_strategy: {
    primary: "overlay",
    fallback: "fuse",
    probe: { id: "enumeration_v1", probe_file: ".substrate_enum_probe", result: "pass", failure_reason: null },
  },
};

const MOUNTINFO_UNIFIED = `25 1 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
26 1 0:24 / /proc rw - proc proc rw
`;
export const MOUNTINFO_HYBRID = `30 1 0:25 / /sys/fs/cgroup rw - tmpfs tmpfs rw
31 30 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
32 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
`;
export const MOUNTINFO_V1 = `30 1 0:25 / /sys/fs/cgroup rw - tmpfs tmpfs rw
31 30 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
`;

export const SYSTEMCTL_SHOW = [
  "systemctl show --no-pager --property=Id,LoadState,ActiveState,SubState,UnitFileState,Listen substrate-world-agent.socket substrate-world-agent.service",
];

/** A healthy systemd Linux host with a socket-activated agent. */
export function linuxHealthy(over: Partial<FakeSpec> = {}): FakeSpec {
  return {
    platform: "linux",
    files: {
      "/proc/filesystems": "nodev\tsysfs\nnodev\ttmpfs\nnodev\toverlay\n",
      "/proc/self/mountinfo": MOUNTINFO_UNIFIED,
      "/proc/sys/kernel/dmesg_restrict": "1\n",
    },
    dirs: ["/dev/fuse", "/run/systemd/system"],
    sockets: ["/run/substrate.sock"],
    bins: ["fuse-overlayfs", "nft", "systemctl"],
    commands: {
      [SYSTEMCTL_SHOW[0]!]: {
        stdout:
          "Id=substrate-world-agent.socket\nLoadState=loaded\nActiveState=active\nSubState=listening\nUnitFileState=enabled\nListen=/run/substrate.sock (Stream)\n\n" +
          "Id=substrate-world-agent.service\nLoadState=loaded\nActiveState=inactive\nSubState=dead\nUnitFileState=static\n",
      },
    },
    http: {
      "/run/substrate.sock /v1/capabilities": { status: 200, body: JSON.stringify(CAPABILITIES) },
      "/run/substrate.sock /v1/doctor/world": { status: 200, body: JSON.stringify(WORLD_REPORT_OK) },
    },
    ...over,
  };
}

const LIMA_LIST_RUNNING =
  JSON.stringify({ name: "substrate", hostname: "lima-substrate", status: "Running", dir: "/Users/t/.lima/substrate", vmType: "vz", arch: "aarch64", cpus: 4, memory: 4294967296, disk: 107374182400, sshLocalPort: 60022 }) + "\n";

export const guestCurlKey = (route: string, t: number) =>
  `limactl shell substrate curl -sS --max-time ${t} --unix-socket /run/substrate.sock -w \\n%{http_code} http://localhost${route}`;

export const GUEST_KEY = `limactl shell substrate sh -c ${GUEST_PROBE_SCRIPT}`;
/** What GUEST_PROBE_SCRIPT prints in the guest (defaults: healthy). */
export const guestProbeOut = (o: { units?: string; caps?: string; info?: string } = {}): string =>
  `${o.units ?? "active\nactive"}\n@@caps\n${o.caps ?? `${JSON.stringify(CAPABILITIES)}\n200`}\n@@info\n${
    o.info ?? "/dev/vda1 102687672 3210984 94217848 4% /\n/usr/sbin/nft"
  }\n`;

/** A healthy Mac: Lima VM running, socket-activated agent answering. */
export function macHealthy(over: Partial<FakeSpec> = {}): FakeSpec {
  return {
    platform: "macos",
    bins: ["limactl", "vsock-proxy"],
    commands: {
      "sysctl -n kern.hv_support": { stdout: "1\n" },
      "limactl list substrate --json": { stdout: LIMA_LIST_RUNNING },
      [GUEST_KEY]: { stdout: guestProbeOut() },
      [guestCurlKey("/v1/doctor/world", 60)]: { stdout: `${JSON.stringify(WORLD_REPORT_OK)}\n200` },
    },
    ...over,
  };
}
