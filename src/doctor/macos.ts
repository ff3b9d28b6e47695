/**
 * macOS host doctor (spec P4.5 + DS0): the Lima VM that hosts the world.
 *
 * Read-only commands only: `limactl list` (never `start`), `sysctl`, and — when the VM is
 * already Running — `limactl shell` for `systemctl is-active` and a curl of /v1/capabilities
 * on the guest socket. A stopped VM is reported, never started.
 *
 * `limactl list NAME --json` prints one JSON object per line (not an array); an unknown
 * name prints `No instance matching NAME found.` on stderr and exits 1 (cmd/limactl/list.go).
 *
 * limactl is looked up like the product does (src/sys/limactl.ts findLimactl): PATH, beside
 * the substrate binary, /opt/homebrew/bin (not in macOS's default PATH), /usr/local/bin,
 * /opt/local/bin; the doctor says which one it used and checks `limactl --version` against
 * the product's minimum, printing the upgrade command.
 */
import { Capabilities, LimaReport, MacosHostReport, macHostPrereqsOk } from "../contract/index.ts";
import type { WorldSettings } from "./config.ts";
import { enableFix, type HostProbe, type HostProbeOptions } from "./linux.ts";
import { type DoctorLine, fail, info, pass, warn } from "./render.ts";
import type { CommandResult, HostSystem } from "./system.ts";
import { dirname, join } from "node:path";
import { LIMACTL_DIRS, MIN_LIMA_VERSION, findLimactl, versionAtLeast } from "../sys/limactl.ts";

/** The limactl the doctor runs: "limactl" when it is on PATH (as before), else its absolute path. */
let limactlCmd: string | null = null;
function locateLimactl(sys: HostSystem): { cmd: string; via: string; path: string } | null {
  const onPath = sys.which("limactl");
  if (onPath) return { cmd: "limactl", via: "PATH", path: onPath };
  const loc = findLimactl({ PATH: "" }, process.execPath, (p) => sys.exists(p));
  return loc ? { cmd: loc.path, via: loc.via, path: loc.path } : null;
}
const limactlBin = (): string => limactlCmd ?? (Bun.which("limactl") ? "limactl" : (findLimactl(process.env)?.path ?? "limactl"));

export const LIMA_INSTANCE = "substrate";
export const GUEST_SOCKET = "/run/substrate.sock";
const GUEST_TIMEOUT_MS = 15_000;

/** `status` of the instance from `limactl list NAME --json` output; NotFound / Unknown otherwise. */
export function parseLimaListStatus(stdout: string, name: string = LIMA_INSTANCE): string {
  for (const line of stdout.split("\n")) {
    const t = line.trim();
    if (t === "") continue;
    try {
      const o = JSON.parse(t) as { name?: unknown; status?: unknown };
      if (o.name === name && typeof o.status === "string" && o.status !== "") return o.status;
    } catch {
      return "Unknown";
    }
  }
  return "NotFound";
}

export const limaShell = (...cmd: string[]): string[] => [limactlBin(), "shell", LIMA_INSTANCE, ...cmd];

/** Guest `curl --unix-socket` GET; the status code comes back on the last line. */
export const guestCurl = (route: string, maxTimeS: number): string[] =>
  limaShell("curl", "-sS", "--max-time", String(maxTimeS), "--unix-socket", GUEST_SOCKET, "-w", "\\n%{http_code}", `http://localhost${route}`);

/** Splits `body\n<code>` from guestCurl. */
export function splitCurlStatus(stdout: string): { status: number | null; body: string } {
  const i = stdout.lastIndexOf("\n");
  const code = Number(stdout.slice(i + 1).trim());
  return { status: Number.isInteger(code) && code > 0 ? code : null, body: i < 0 ? "" : stdout.slice(0, i) };
}

/*
 * Everything the doctor asks the guest, in ONE `limactl shell` (each one is an SSH round trip,
 * ~0.3 s on a Mac): unit states, GET /v1/capabilities as the default user (who must be in group
 * `substrate` to open the 0660 socket), root disk usage and nft. Sections are marked with
 * `@@name` lines; no single quotes inside (Lima single-quotes each argument).
 */
export const GUEST_PROBE_SCRIPT = [
  "systemctl is-active substrate-world-agent.socket substrate-world-agent.service",
  "echo @@caps",
  `curl -sS --max-time 5 --unix-socket ${GUEST_SOCKET} -w "\\n%{http_code}" http://localhost/v1/capabilities 2>&1`,
  "echo",
  "echo @@info",
  "df -P / | tail -n 1",
  'PATH="$PATH:/usr/sbin:/sbin"; command -v nft || echo missing',
].join("\n");

export interface GuestProbe {
  socket: string;
  service: string;
  capsError: string | null;
  diskUse: string | null;
  nft: string | null;
}

/** Reads GUEST_PROBE_SCRIPT's output; a missing section (ssh failure …) fails that check. */
export function parseGuestProbe(r: CommandResult): GuestProbe {
  const sections = new Map<string, string>();
  let name = "units";
  let buf: string[] = [];
  for (const line of r.stdout.split("\n")) {
    if (line.startsWith("@@")) {
      sections.set(name, buf.join("\n"));
      name = line.slice(2).trim();
      buf = [];
    } else buf.push(line);
  }
  sections.set(name, buf.join("\n"));
  const transport = r.error ?? (r.stderr.trim().split("\n")[0] || `limactl shell exit ${r.code}`);
  const [socket = "", service = ""] = (sections.get("units") ?? "").split("\n").map((l) => l.trim());

  let capsError: string | null;
  const caps = sections.get("caps");
  if (caps === undefined) capsError = transport;
  else {
    const { status, body } = splitCurlStatus(caps.trimEnd());
    if (status === null || status === 0) capsError = body.trim().split("\n")[0] || "curl failed";
    else if (status !== 200) capsError = `HTTP ${status}`;
    else {
      try {
        const p = Capabilities.safeParse(JSON.parse(body));
        capsError = p.success ? null : `capabilities break the contract: ${p.error.issues[0]?.message}`;
      } catch {
        capsError = "capabilities response is not JSON";
      }
    }
  }

  let diskUse: string | null = null;
  let nft: string | null = null;
  const info = sections.get("info");
  if (info !== undefined) {
    const [df = "", n = ""] = info.trim().split("\n");
    const cols = df.trim().split(/\s+/);
    if (cols.length >= 5 && /^\d+%$/.test(cols[4]!)) diskUse = `${cols[4]} used (${Math.round(Number(cols[3]) / 1048576)} GiB free)`;
    nft = n.trim() === "" ? null : n.trim();
  }
  return { socket, service, capsError, diskUse, nft };
}

export async function probeMacHost(
  sys: HostSystem,
  settings: WorldSettings,
  opts: HostProbeOptions,
): Promise<HostProbe<MacosHostReport>> {
  const lines: DoctorLine[] = [];
  if (settings.world_enabled) lines.push(pass(`world isolation: enabled (${settings.enabled_source})`));
  else lines.push(warn(`world isolation: disabled by ${settings.enabled_source}`, enableFix(settings.enabled_source)));

  const found = locateLimactl(sys);
  limactlCmd = found?.cmd ?? null;
  const lima: LimaReport = {
    installed: found !== null,
    virtualization: false,
    vm_status: "Unknown",
    service_active: false,
    agent_caps_ok: false,
    vsock_proxy: sys.which("vsock-proxy") !== null,
  };
  let dependencyMissing: string | null = null;

  const hv = await sys.run(["sysctl", "-n", "kern.hv_support"], { timeoutMs: 5_000 });
  lima.virtualization = hv.code === 0 && hv.stdout.trim() === "1";
  if (lima.virtualization) lines.push(pass("virtualization: kern.hv_support=1"));
  else {
    lines.push(
      fail(
        `virtualization: unavailable (kern.hv_support=${hv.stdout.trim() || hv.error || "?"})`,
        "use a Mac with Hypervisor.framework support (Apple silicon, or Intel with VT-x); inside a VM enable nested virtualization",
      ),
    );
  }

  if (!found) {
    dependencyMissing = "limactl";
    lines.push(fail("lima: limactl not found on PATH", `brew install lima   # also looked beside substrate (${dirname(process.execPath)}) and in ${LIMACTL_DIRS.join(", ")}`));
  } else {
    lines.push(
      pass(
        found.via === "PATH"
          ? `lima: limactl found on PATH (${found.path})`
          : `lima: limactl found ${found.via === "beside substrate" ? "beside substrate" : `in ${found.via}`} (${found.path}; not on PATH, substrate uses it anyway)`,
      ),
    );
    const ver = await sys.run([found.cmd, "--version"], { timeoutMs: GUEST_TIMEOUT_MS });
    const v = /version\s+v?(\d+\.\d+\.\d+[^\s]*)/.exec(ver.stdout)?.[1] ?? null;
    const upgrade = found.path.startsWith("/opt/local/") ? "sudo port selfupdate && sudo port upgrade lima" : "brew upgrade lima";
    if (v === null) lines.push(info(`lima: version unknown (${ver.error ?? (ver.stderr.trim().split("\n")[0] || "no output")})`));
    else if (versionAtLeast(v, MIN_LIMA_VERSION)) lines.push(pass(`lima: version ${v} (>= ${MIN_LIMA_VERSION})`));
    else lines.push(fail(`lima: version ${v} is older than ${MIN_LIMA_VERSION}, which substrate needs`, `${upgrade}   # then: substrate world warm`));
    const list = await sys.run([found.cmd, "list", LIMA_INSTANCE, "--json"], { timeoutMs: GUEST_TIMEOUT_MS });
    if (list.error !== null) lima.vm_status = "Unknown";
    else if (list.code === 0) lima.vm_status = parseLimaListStatus(list.stdout);
    else lima.vm_status = /no instance|not found|does not exist/i.test(list.stderr) ? "NotFound" : "Unknown";

    if (lima.vm_status === "Running") lines.push(pass(`lima VM '${LIMA_INSTANCE}': Running`));
    else if (lima.vm_status === "NotFound") {
      lines.push(fail(`lima VM '${LIMA_INSTANCE}': not created`, "substrate world warm   # creates and provisions the VM"));
    } else if (lima.vm_status === "Unknown") {
      const why = list.error ?? (list.stderr.trim().split("\n")[0] || "unreadable output");
      lines.push(fail(`lima VM '${LIMA_INSTANCE}': status unknown (${why})`, `limactl list ${LIMA_INSTANCE}   # then: substrate world warm`));
    } else {
      lines.push(fail(`lima VM '${LIMA_INSTANCE}': ${lima.vm_status}`, "substrate world warm   # starts the VM (the doctor never does)"));
    }

    // A warm/rebuild is replacing the guest's agent or units right now: what the guest answers
    // is transient, so do not probe it; report the rebuild loudly instead (ok=false, exit 4).
    const rebuild = lima.vm_status === "Running" && opts.probeWorld ? sys.limaRebuild() : null;
    if (rebuild !== null) {
      lines.push(
        fail(
          `guest: a rebuild is in progress (phase ${rebuild.phase}, substrate pid ${rebuild.pid}); agent not probed`,
          `wait for that \`substrate world warm\` (pid ${rebuild.pid}) to finish, then re-run this doctor`,
        ),
      );
    } else if (lima.vm_status === "Running" && opts.probeWorld) {
      const g = parseGuestProbe(await sys.run(limaShell("sh", "-c", GUEST_PROBE_SCRIPT), { timeoutMs: GUEST_TIMEOUT_MS }));
      // Socket activation: an active .socket is enough, the service starts on first connect.
      lima.service_active = g.socket === "active" || g.service === "active";
      if (lima.service_active) lines.push(pass(`guest: substrate-world-agent socket=${g.socket} service=${g.service}`));
      else {
        lines.push(
          fail(
            `guest: substrate-world-agent not active (socket=${g.socket || "?"}, service=${g.service || "?"})`,
            "substrate world warm   # re-provisions; details: limactl shell substrate journalctl -u substrate-world-agent -n 50",
          ),
        );
      }

      lima.agent_caps_ok = g.capsError === null;
      if (lima.agent_caps_ok) lines.push(pass(`guest: agent answered GET /v1/capabilities on ${GUEST_SOCKET}`));
      else {
        lines.push(
          fail(
            `guest: GET /v1/capabilities on ${GUEST_SOCKET} failed: ${g.capsError}`,
            /permission denied/i.test(g.capsError ?? "")
              ? "substrate world warm   # makes the Lima user the socket's owner (drop-in SocketUser=<user>)"
              : "substrate world restart",
          ),
        );
      }
      // P4.5 extras, informational only.
      if (g.diskUse !== null) lines.push(info(`guest disk /: ${g.diskUse}`));
      if (g.nft !== null) lines.push(info(`guest nft: ${g.nft}`));
    } else if (!opts.probeWorld) {
      lines.push(info("guest: agent not probed (world isolation disabled)"));
    }
  }

  if (lima.vsock_proxy) lines.push(pass("vsock-proxy: found"));
  else {
    lines.push(
      warn(
        "vsock-proxy: not found (optional; the Lima socket/SSH forward is used instead)",
        "optional: install vsock-proxy and put it on PATH to enable the vsock transport",
      ),
    );
  }
  lines.push(info(`world_fs_mode: ${settings.fs_mode}`));
  lines.push(info(`world_fs_isolation: ${settings.fs_isolation}`));
  lines.push(info(`world_fs_require_world: ${settings.require_world}`));

  const draft = {
    platform: "macos" as const,
    world_fs_mode: settings.fs_mode,
    world_fs_isolation: settings.fs_isolation,
    world_fs_require_world: settings.require_world,
    lima,
  };
  const report = MacosHostReport.parse({ ...draft, ok: settings.world_enabled && macHostPrereqsOk(draft) });
  return { report, lines, dependencyMissing };
}
