/**
 * Socket-activation mode (root + systemd PID 1): the same layout as the Lima guest (spec M1,
 * guest-assets/): the agent at /usr/local/bin/substrate-world-agent, the shipped
 * `substrate-world-agent.socket` + `.service` byte for byte in /etc/systemd/system, group
 * `substrate` owning /run/substrate.sock (0660), the invoking user (SUDO_USER) in it.
 *
 * Idempotent: every step compares before it writes; a re-run on a healthy host changes
 * nothing and restarts nothing. A changed agent binary, unit or drop-in restarts the socket
 * and service, so the next connection gets the new agent (worlds of the old one are
 * disposable by design).
 *
 * Host difference from the Lima guest: the unit's `ProtectSystem=strict` + `ProtectHome=
 * read-only` would make every project under /home (and /tmp) read-only inside worlds, since a
 * world's mount namespace is a copy of the agent's. The guest lists its project mounts in a
 * drop-in (provision.sh `--writable`); on a host we list the usual project roots (plus
 * `--writable DIR`) in the same drop-in file and turn ProtectHome off (see renderDropin).
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { dirname, join } from "node:path";
import { DEFAULT_SOCKET } from "../config.ts";
import { assetFiles } from "../embedded.ts";
import { addUserToGroup, groupAddSystem, isMember, lingerEnabled, readGroup, userEntry, AccountsError } from "../sys/accounts.ts";
import { Systemctl, SystemctlError, systemdBooted } from "../sys/systemctl.ts";
import { agentPid, stopAgent } from "./agent-process.ts";
import { pidFileFor } from "./paths.ts";
import { Actions, isRoot, LifecycleError, probe, sha256, vstr, wantedAgent, type LifecycleContext } from "./context.ts";

export const AGENT_PATH = "/usr/local/bin/substrate-world-agent";
export const UNIT_DIR = "/etc/systemd/system";
export const SOCKET_UNIT = "substrate-world-agent.socket";
export const SERVICE_UNIT = "substrate-world-agent.service";
export const DROPIN = join(UNIT_DIR, `${SERVICE_UNIT}.d`, "50-writable-mounts.conf");
export const GROUP = "substrate";
/** Where projects usually live on a Linux host; `-` = skip when missing (systemd syntax). */
export const DEFAULT_WRITABLE = ["/home", "/root", "/srv", "/tmp", "/var/tmp", "/mnt", "/media"];

export interface ModeResult {
  actions: Actions;
  pid: number | null;
  agentVersion: string | null;
  guidance: string[];
}

export function renderDropin(paths: string[]): string {
  const list = [...new Set(paths)].sort().map((p) => `-${p}`).join(" ");
  // ProtectHome=no: with ProtectHome=read-only, ReadWritePaths=/home does NOT win (measured
  // in a systemd 252 guest: a world's write to a project under /home got EROFS), and most
  // Linux users' projects live in /home. ProtectSystem=strict still keeps everything else
  // read-only for the agent.
  return `# Written by substrate world warm: project roots writable for worlds (ProtectSystem=strict).\n[Service]\nProtectHome=no\nReadWritePaths=${list}\n`;
}

const sameFile = (path: string, want: Uint8Array | string): boolean => {
  try {
    const have = readFileSync(path);
    return Buffer.compare(have, Buffer.from(want)) === 0;
  } catch {
    return false;
  }
};

/** Atomic replace (a running agent keeps its old inode). */
function writeAtomic(path: string, data: Uint8Array | string, mode: number): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.new-${process.pid}`;
  writeFileSync(tmp, data, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}

function preconditions(sc: Systemctl): void {
  if (!isRoot()) throw new LifecycleError(4, "socket activation mode needs root", "sudo substrate world warm");
  if (!systemdBooted()) throw new LifecycleError(4, "systemd is not PID 1 here (no /run/systemd/system)", "use manual mode: substrate world warm --mode manual");
  if (!sc.available()) throw new LifecycleError(4, "systemctl not found", "install systemd, or use: substrate world warm --mode manual");
}

function wrap<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof SystemctlError || e instanceof AccountsError)
      throw new LifecycleError(1, `${what}: ${e.message}`, `journalctl -u ${SERVICE_UNIT} -n 50   # then: sudo substrate world warm`);
    throw e;
  }
}

export async function warmSystemd(ctx: LifecycleContext, sc = new Systemctl()): Promise<ModeResult> {
  preconditions(sc);
  const p = ctx.progress;
  const actions = new Actions();
  const guidance: string[] = [];
  const want = wantedAgent(ctx.env);

  // 1. Agent binary: compared by content hash (cheap: the embedded hash is known).
  const have = existsSync(AGENT_PATH) ? sha256(new Uint8Array(readFileSync(AGENT_PATH))) : null;
  if (have === null || have !== want.sha256) {
    const bytes = await want.bytes();
    p.step(`${have === null ? "installing" : "replacing"} ${AGENT_PATH} (${vstr(want.version) ?? "unknown version"})`);
    writeAtomic(AGENT_PATH, bytes, 0o755);
    actions.add(have === null ? "installed_agent" : "replaced_agent");
  }

  // 2. Units, exactly as shipped (the Lima guest gets the same files).
  const assets = await assetFiles();
  for (const unit of [SOCKET_UNIT, SERVICE_UNIT]) {
    const bytes = assets[unit];
    if (!bytes) throw new LifecycleError(1, `this build carries no ${unit}`, "rebuild substrate (guest-assets/ is embedded at build time)");
    const dest = join(UNIT_DIR, unit);
    if (!sameFile(dest, bytes)) {
      const existed = existsSync(dest);
      writeAtomic(dest, bytes, 0o644);
      if (!actions.has(existed ? "updated_units" : "installed_units")) actions.add(existed ? "updated_units" : "installed_units");
    }
  }
  const dropin = renderDropin([...DEFAULT_WRITABLE, ...(ctx.writable ?? [])]);
  if (!sameFile(DROPIN, dropin)) {
    writeAtomic(DROPIN, dropin, 0o644);
    actions.add("updated_dropin");
  }

  // 3. Group and membership.
  if (!readGroup(GROUP)) {
    wrap("creating group substrate", () => groupAddSystem(GROUP));
    actions.add("created_group");
  }
  const user = ctx.env.SUDO_USER && ctx.env.SUDO_USER !== "root" ? ctx.env.SUDO_USER : null;
  if (user && userEntry(user)) {
    if (!isMember(user, GROUP)) {
      wrap(`adding ${user} to group substrate`, () => addUserToGroup(user, GROUP));
      actions.add("added_user_to_group");
      guidance.push(`${user} is now in group substrate: log out and back in (or run \`newgrp substrate\`) so your shells may use ${DEFAULT_SOCKET} without sudo`);
    }
    if (!lingerEnabled(user))
      guidance.push(`the socket is a system unit and needs no login session; only if user services of ${user} must reach it after logout: sudo loginctl enable-linger ${user}`);
  } else if (!user) {
    guidance.push(`add the users who may run worlds to group substrate: sudo usermod -aG substrate USER (then log out and in)`);
  }

  // 4. systemd: reload on changes, enable, (re)start.
  const changed = actions.list.length > 0;
  if (changed) {
    wrap("daemon-reload", () => sc.daemonReload());
    actions.add("daemon_reload");
  }
  if (sc.isEnabled(SOCKET_UNIT) !== "enabled") {
    wrap(`enabling ${SOCKET_UNIT}`, () => sc.enable(SOCKET_UNIT));
    actions.add("enabled_socket");
  }
  const needsRestart = ["installed_agent", "replaced_agent", "installed_units", "updated_units", "updated_dropin", "created_group"].some((a) =>
    actions.has(a as never),
  );
  const socketActive = sc.isActive(SOCKET_UNIT) === "active";
  // A manual-mode agent of ours (earlier `substrate -c` as root before systemd owned the
  // socket) would keep serving a socket file systemd is about to replace: stop it first.
  if (!socketActive && agentPid(pidFileFor(DEFAULT_SOCKET), DEFAULT_SOCKET) !== null) {
    p.step("stopping the manual-mode agent: systemd takes over the socket");
    await stopAgent(pidFileFor(DEFAULT_SOCKET), DEFAULT_SOCKET);
    actions.add("stopped_agent");
  }
  if (needsRestart && socketActive) {
    p.step("restarting the agent (binary, units or group changed)");
    wrap("restarting the agent", () => {
      sc.stop(SERVICE_UNIT, SOCKET_UNIT);
      sc.start(SOCKET_UNIT);
    });
    actions.add("restarted");
  } else if (!socketActive) {
    wrap(`starting ${SOCKET_UNIT}`, () => sc.start(SOCKET_UNIT));
    actions.add("started_socket");
  }

  // 5. Validate through the socket (the first connection starts the service).
  const caps = await probe(DEFAULT_SOCKET, 30_000);
  if (!caps)
    throw new LifecycleError(3, `the agent does not answer GET /v1/capabilities on ${DEFAULT_SOCKET}`, `journalctl -u ${SERVICE_UNIT} -n 50   # then: sudo substrate world restart`);
  if (want.version && vstr(caps.agent) !== vstr(want.version))
    throw new LifecycleError(
      1,
      `the agent answering is ${vstr(caps.agent)}, expected ${vstr(want.version)}`,
      `sudo systemctl restart ${SOCKET_UNIT} ${SERVICE_UNIT}; journalctl -u ${SERVICE_UNIT} -n 50`,
    );
  const pid = sc.show(SERVICE_UNIT).MainPID || null;
  return { actions, pid, agentVersion: vstr(caps.agent), guidance };
}

export async function stopSystemd(ctx: LifecycleContext, sc = new Systemctl()): Promise<ModeResult> {
  preconditions(sc);
  const actions = new Actions();
  const svc = sc.isActive(SERVICE_UNIT);
  const sock = sc.isActive(SOCKET_UNIT);
  if (svc === "active" || sock === "active" || svc === "activating") {
    ctx.progress.step(`stopping ${SOCKET_UNIT} and ${SERVICE_UNIT}`);
    wrap("stopping the agent", () => sc.stop(SOCKET_UNIT, SERVICE_UNIT));
    actions.add("stopped_agent");
  }
  const guidance = sc.isEnabled(SOCKET_UNIT) === "enabled" ? [`${SOCKET_UNIT} stays enabled: it listens again at boot, or now with: sudo substrate world warm`] : [];
  return { actions, pid: null, agentVersion: null, guidance };
}

export async function restartSystemd(ctx: LifecycleContext, sc = new Systemctl()): Promise<ModeResult> {
  const stopped = await stopSystemd(ctx, sc);
  // /run/substrate.sock goes with the socket unit (RemoveOnStop=yes); warm brings both back.
  rmSync(DEFAULT_SOCKET, { force: true });
  const warm = await warmSystemd(ctx, sc);
  return { ...warm, actions: Actions.concat(stopped.actions, warm.actions), guidance: [...stopped.guidance, ...warm.guidance] };
}

/** Units as status shows them (null when systemd is not PID 1 or the units are absent). */
export function unitStates(sc = new Systemctl()): { socket: string; service: string; socket_enabled: string } | null {
  if (!systemdBooted() || !sc.available()) return null;
  const enabled = sc.isEnabled(SOCKET_UNIT);
  if (enabled === "not-found" && !existsSync(join(UNIT_DIR, SOCKET_UNIT))) return null;
  return { socket: sc.isActive(SOCKET_UNIT), service: sc.isActive(SERVICE_UNIT), socket_enabled: enabled };
}
