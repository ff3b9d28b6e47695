/**
 * Lima's own guestSocket → hostSocket forward of /run/substrate.sock (profile `portForwards`).
 *
 * Lima registers it ONCE, as `ssh -O forward -L <dir>/sock/substrate.sock:/run/substrate.sock`
 * on the hostagent's SSH ControlMaster (pkg/hostagent/hostagent.go, watchGuestAgentEvents +
 * forwardSSH). When that master goes (host sleep, `limactl shell --reconnect`), the forward
 * goes with it and Lima never re-creates it (lima-vm/lima#5420); the host socket file stays
 * and refuses connections. The repair does what the hostagent did, on the current master:
 * `limactl shell NAME true` (ControlMaster=auto makes one if there is none), remove the stale
 * socket, `ssh -F <ssh.config> -O forward -L …`. The caller treats a dead forward as expected
 * (debug, not a warning): the ssh2 forwards of src/transport work without it.
 */
import { lstatSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import type { LimaInstance } from "../contract/index.ts";
import { Limactl } from "../sys/limactl.ts";
import { GUEST_SOCKET } from "./layout.ts";

export const nativeSocketPath = (inst: Pick<LimaInstance, "dir">): string => join(inst.dir, "sock", "substrate.sock");

/** The instance's profile asks Lima to forward /run/substrate.sock. */
function configured(inst: LimaInstance): boolean {
  const pf = (inst.config as { portForwards?: unknown } | undefined)?.portForwards;
  return Array.isArray(pf) && pf.some((r) => r && typeof r === "object" && (r as { guestSocket?: unknown }).guestSocket === GUEST_SOCKET);
}

export type ForwardState = "ok" | "refused" | "missing" | "error" | "absent-not-configured";

/** Connects to the host socket (no request): does anything listen? */
export async function probeNativeForward(inst: LimaInstance, timeoutMs = 3000): Promise<ForwardState> {
  const path = nativeSocketPath(inst);
  let isSock = false;
  try {
    isSock = lstatSync(path).isSocket();
  } catch {}
  if (!isSock) return configured(inst) ? "missing" : "absent-not-configured";
  return await new Promise<ForwardState>((resolve) => {
    let done = false;
    const finish = (s: ForwardState) => {
      if (!done) {
        done = true;
        clearTimeout(t);
        resolve(s);
      }
    };
    const t = setTimeout(() => finish("error"), timeoutMs);
    Bun.connect({
      unix: path,
      socket: {
        open(sock) {
          sock.end();
          finish("ok");
        },
        data() {},
        connectError(_s, err) {
          finish((err as { code?: string }).code === "ECONNREFUSED" ? "refused" : "error");
        },
        error() {
          finish("error");
        },
      },
    }).catch((err: { code?: string }) => finish(err?.code === "ECONNREFUSED" ? "refused" : "error"));
  });
}

export interface RepairOptions {
  limactl?: Limactl;
  env?: NodeJS.ProcessEnv;
  debug?: (msg: string) => void;
}

/** Re-registers the forward on Lima's current master. True when the host socket answers again. */
export async function repairNativeForward(inst: LimaInstance, o: RepairOptions = {}): Promise<boolean> {
  const debug = o.debug ?? (() => {});
  const env = o.env ?? process.env;
  const limactl = o.limactl ?? new Limactl({ env });
  if (!configured(inst) || !inst.sshConfigFile) return false;
  const ssh = Bun.which("ssh", { PATH: `${env.PATH ?? ""}:/usr/bin` });
  if (!ssh) {
    debug("lima-native repair: no ssh client");
    return false;
  }
  const path = nativeSocketPath(inst);
  try {
    // A master for ssh -O: `limactl shell` uses ControlMaster=auto, so this makes one if needed.
    const r = await limactl.shell(inst.name, ["true"], { timeoutMs: 30_000 });
    if (r.code !== 0) {
      debug(`lima-native repair: limactl shell failed (exit ${r.code}): ${r.stderr.trim()}`);
      return false;
    }
    if ((await probeNativeForward(inst)) === "ok") return true;
    rmSync(path, { force: true }); // nobody listens on it (checked above): Lima's RemoveStaleSocket
    mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
    const p = Bun.spawn([ssh, "-F", inst.sshConfigFile, "-T", "-O", "forward", "-L", `${path}:${GUEST_SOCKET}`, "-N", "-f", `lima-${inst.name}`], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
      timeout: 20_000,
      env,
    });
    const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
    if (code !== 0) {
      debug(`lima-native repair: ssh -O forward failed (exit ${code}): ${err.trim()}`);
      return false;
    }
    const ok = (await probeNativeForward(inst)) === "ok";
    debug(`lima-native repair: ${ok ? "forward re-registered" : "socket still refuses"}`);
    return ok;
  } catch (e) {
    debug(`lima-native repair: ${(e as Error).message}`);
    return false;
  }
}
