/**
 * Validates the socket-activated agent layout inside the guest with ONE `limactl shell`
 * (each shell is an SSH round trip on a Mac): boot finished (/run/lima-boot-done), the tools
 * the world needs, agent binary + its --version, unit files byte-identical to ours, the mounts
 * and socket-owner drop-ins, socket enabled/active/owned <Lima user>:substrate 0660, the SSH
 * user in the group, and GET /v1/capabilities through /run/substrate.sock as that user.
 *
 * The socket is owned by the Lima user (a drop-in, as Lima's docker-rootful template does with
 * SocketUser={{.User}}), so access does not depend on the groups of Lima's SSH master: that
 * master predates provisioning, and `shell --reconnect` would kill the guestSocket forward
 * registered on it (pkg/hostagent/hostagent.go). Group `substrate` + 0660 stay for everyone else.
 */
import { Capabilities, GuestLayout, VersionInfo } from "../contract/index.ts";
import { sameBuild, versionString } from "../version.ts";

export const GUEST_SOCKET = "/run/substrate.sock";
export const GUEST_AGENT = "/usr/local/bin/substrate-world-agent";
/** `stat -c '%U:%G %a %F'` the socket must show for the Lima user `user`. */
export const socketOwner = (user: string): string => `${user}:substrate 660 socket`;
/** Written by provision.sh: the socket belongs to the Lima user (see above). */
export const SOCKET_USER_DROPIN = "/etc/systemd/system/substrate-world-agent.socket.d/50-lima-user.conf";
export const socketUserDropin = (user: string): string => `# Written by substrate provision.sh: the Lima user owns the socket (group substrate, 0660).\n[Socket]\nSocketUser=${user}\n`;
/** What a world needs in the guest (command → Ubuntu package; provision.sh installs the same). No dnsmasq since issue 15: the world's DNS stub is the egress helper. */
export const REQUIRED_TOOLS: Record<string, string> = {
  nft: "nftables",
  ip: "iproute2",
  "fuse-overlayfs": "fuse-overlayfs",
  setfattr: "attr",
  getfattr: "attr",
  curl: "curl",
};
/** Written by provision.sh: line 1 `size mtime` of the agent binary, line 2 its --version --json. */
export const AGENT_STAMP = "/etc/substrate/agent.stamp";

/** Runs as the default user; prints key=value lines (values on one line). */
export const VALIDATE_SCRIPT = `
A=${GUEST_AGENT}; U=/etc/systemd/system; S=substrate-world-agent
h() { if [ -f "$1" ]; then sha256sum < "$1" | cut -c1-64; else echo absent; fi; }
one() { printf %s "$1" | head -c 3000 | tr '\\n' ' '; }
echo "user=$(id -un)"
echo "home=$HOME"
echo "boot_done=$(test -e /run/lima-boot-done && echo yes || echo no)"
m=""; for t in ${Object.keys(REQUIRED_TOOLS).join(" ")}; do PATH="$PATH:/usr/sbin:/sbin" command -v "$t" >/dev/null 2>&1 || m="$m $t"; done; echo "missing_tools=$m"
# Starting the 100 MB agent costs more than the rest together: trust provision.sh's stamp
# while the binary's size + mtime are the ones it recorded.
if [ ! -e "$A" ]; then echo "agent_rc=absent"
elif [ "$(stat -c '%s %Y' "$A")" = "$(head -n1 ${AGENT_STAMP} 2>/dev/null)" ]; then echo "agent_rc=0"; echo "agent_out=$(sed -n 2p ${AGENT_STAMP})"
else out=$("$A" --version --json 2>&1); echo "agent_rc=$?"; echo "agent_out=$(one "$out")"; fi
echo "socket_unit=$(h $U/$S.socket)"
echo "service_unit=$(h $U/$S.service)"
echo "dropin=$(h $U/$S.service.d/50-writable-mounts.conf)"
echo "socket_dropin=$(h $U/$S.socket.d/50-lima-user.conf)"
echo "enabled=$(systemctl is-enabled $S.socket 2>/dev/null)"
echo "active=$(systemctl is-active $S.socket 2>/dev/null)"
echo "sock=$(stat -c '%U:%G %a %F' ${GUEST_SOCKET} 2>/dev/null)"
echo "groups_db=$(id -nG "$(id -un)")"
echo "groups_session=$(id -nG)"
caps=$(curl -sS --max-time 10 --unix-socket ${GUEST_SOCKET} http://localhost/v1/capabilities 2>&1); echo "caps_rc=$?"
echo "caps=$(one "$caps")"
`;

export interface Expected {
  agentVersion: VersionInfo | null;
  socketUnitSha: string;
  serviceUnitSha: string;
  /** sha256 of the expected drop-in, or "absent". */
  dropinSha: string;
  /** sha256 of socketUserDropin(user) for the user the guest reports (computed by the caller). */
  socketDropinSha?: (user: string) => string;
}

export interface ParsedLayout {
  layout: GuestLayout;
  user: string;
  home: string;
  /** Version of the agent that answered /v1/capabilities, when it did. */
  runningAgent: VersionInfo | null;
}

export function parseKv(stdout: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of stdout.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) m.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  return m;
}

const json = (s: string | undefined): unknown => {
  try {
    return JSON.parse(s ?? "");
  } catch {
    return null;
  }
};

const matches = (want: VersionInfo | null, got: VersionInfo | null) => !!want && !!got && sameBuild(want, got) && want.target === got.target;

export function parseLayout(stdout: string, exp: Expected): ParsedLayout {
  const kv = parseKv(stdout);
  const problems: string[] = [];
  const agentRc = kv.get("agent_rc");
  const agentOut = kv.get("agent_out") ?? "";
  const agentPresent = agentRc !== undefined && agentRc !== "absent";
  let agentVersion: VersionInfo | null = null;
  let execError: string | null = null;
  if (agentPresent) {
    const v = VersionInfo.safeParse(json(agentOut));
    if (agentRc === "0" && v.success) agentVersion = v.data;
    else execError = /exec format error|cannot execute binary/i.test(agentOut) ? `exec format error (the agent is built for another CPU arch): ${agentOut.slice(0, 200)}` : `exit ${agentRc}: ${agentOut.slice(0, 200) || "no output"}`;
  }
  const agentCurrent = agentVersion !== null && (exp.agentVersion === null || matches(exp.agentVersion, agentVersion));
  if (!agentPresent) problems.push(`agent binary ${GUEST_AGENT} is missing`);
  else if (execError) problems.push(`agent binary does not run: ${execError}`);
  else if (!agentCurrent) problems.push(`agent ${versionString(agentVersion!)} differs from this build's ${versionString(exp.agentVersion!)}`);

  const socketUnitCurrent = kv.get("socket_unit") === exp.socketUnitSha;
  const serviceUnitCurrent = kv.get("service_unit") === exp.serviceUnitSha;
  const dropinCurrent = kv.get("dropin") === exp.dropinSha;
  if (!socketUnitCurrent) problems.push(kv.get("socket_unit") === "absent" ? "substrate-world-agent.socket is not installed" : "substrate-world-agent.socket differs from this build's");
  if (!serviceUnitCurrent) problems.push(kv.get("service_unit") === "absent" ? "substrate-world-agent.service is not installed" : "substrate-world-agent.service differs from this build's");
  if (!dropinCurrent) problems.push("the agent's writable-mounts drop-in does not match the VM's mounts");
  const user = kv.get("user") ?? "";
  const socketDropinCurrent = !exp.socketDropinSha || (user !== "" && kv.get("socket_dropin") === exp.socketDropinSha(user));
  if (!socketDropinCurrent) problems.push(`the socket's owner drop-in (SocketUser=${user || "?"}) is missing or different`);
  const missingTools = (kv.get("missing_tools") ?? "").split(/\s+/).filter(Boolean);
  if (kv.has("missing_tools") && missingTools.length) problems.push(`the guest lacks tools the world needs: ${missingTools.join(", ")} (a failed first-boot package install?)`);
  const bootDone = kv.get("boot_done") !== "no";

  const enabled = kv.get("enabled") === "enabled";
  const active = kv.get("active") === "active";
  const owner = kv.get("sock") || null;
  if (!enabled) problems.push(`substrate-world-agent.socket is not enabled (${kv.get("enabled") || "unknown"})`);
  if (!active) problems.push(`substrate-world-agent.socket is not active (${kv.get("active") || "unknown"})`);
  const wantOwner = socketOwner(user || "?");
  if (owner !== wantOwner) problems.push(`${GUEST_SOCKET} is ${owner ?? "missing"}, expected ${wantOwner}`);

  const inGroup = (s: string | undefined) => (s ?? "").split(/\s+/).includes("substrate");
  const userInGroup = inGroup(kv.get("groups_db"));
  const sessionInGroup = inGroup(kv.get("groups_session"));
  // The session's groups do not matter any more (the socket is the user's); reported only.
  if (!userInGroup) problems.push(`user ${kv.get("user") ?? "?"} is not in the substrate group`);

  const caps = Capabilities.safeParse(json(kv.get("caps")));
  const capsOk = kv.get("caps_rc") === "0" && caps.success;
  const runningAgent = caps.success ? caps.data.agent : null;
  if (!capsOk) problems.push(`GET /v1/capabilities through ${GUEST_SOCKET} failed: ${(kv.get("caps") ?? "").slice(0, 200) || "no answer"}`);
  else if (exp.agentVersion && !matches(exp.agentVersion, runningAgent)) problems.push(`the running agent is ${versionString(runningAgent!)}, not ${versionString(exp.agentVersion)} (restart needed)`);

  return {
    user: kv.get("user") ?? "",
    home: kv.get("home") ?? "",
    runningAgent,
    layout: {
      agent_present: agentPresent,
      agent_version: agentVersion ? versionString(agentVersion) : null,
      agent_exec_error: execError,
      agent_current: agentCurrent,
      socket_unit_current: socketUnitCurrent,
      service_unit_current: serviceUnitCurrent,
      mounts_dropin_current: dropinCurrent,
      socket_enabled: enabled,
      socket_active: active,
      socket_owner: owner,
      user_in_group: userInGroup,
      session_in_group: sessionInGroup,
      capabilities_ok: capsOk,
      boot_done: bootDone,
      missing_tools: missingTools,
      socket_dropin_current: socketDropinCurrent,
      problems,
    },
  };
}
