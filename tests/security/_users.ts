/**
 * Throwaway regular users for security tests, and an API client that runs AS such a user
 * (curl on the agent's Unix socket under setpriv), so the agent sees the user's SO_PEERCRED —
 * exactly what a member of group `substrate` can do on a real machine.
 */
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  remove(): void;
}

let n = 0;
/** useradd with a fresh home under a traversable temp dir; `remove()` deletes both. */
export function createUser(prefix = "sbtu"): TestUser {
  const name = `${prefix}${process.pid % 100000}${n++}`;
  const base = mkdtempSync("/tmp/substrate-user-");
  chmodSync(base, 0o755);
  const home = join(base, name);
  const r = Bun.spawnSync(["useradd", "-M", "-d", home, "-s", "/bin/bash", "-U", name], { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`useradd ${name}: ${r.stderr.toString()}`);
  const id = (f: string) => Number(Bun.spawnSync(["id", f, name], { stdout: "pipe" }).stdout.toString().trim());
  const uid = id("-u");
  const gid = id("-g");
  mkdirSync(home, { mode: 0o755 });
  chownSync(home, uid, gid);
  return {
    name,
    uid,
    gid,
    home,
    remove() {
      Bun.spawnSync(["userdel", name], { stderr: "ignore" });
      Bun.spawnSync(["groupdel", name], { stderr: "ignore" });
      rmSync(base, { recursive: true, force: true });
    },
  };
}

/** A directory owned by `u` (mode 0755) inside its home. */
export function userProject(u: TestUser, name = "proj"): string {
  const d = join(u.home, name);
  mkdirSync(d, { recursive: true });
  chownSync(d, u.uid, u.gid);
  return d;
}

export interface ApiAnswer {
  status: number;
  body: any;
}

/** One HTTP request on the agent socket, sent by a process running as `u`. */
export function apiAs(u: TestUser, socket: string, method: string, path: string, body?: unknown): ApiAnswer {
  const args = ["setpriv", `--reuid=${u.uid}`, `--regid=${u.gid}`, "--init-groups", "--", "curl", "-sS", "--unix-socket", socket, "-X", method, "-o", "-", "-w", "\n%{http_code}"];
  if (body !== undefined) args.push("-H", "content-type: application/json", "--data-binary", JSON.stringify(body));
  args.push(`http://localhost${path}`);
  const r = Bun.spawnSync(args, { stdout: "pipe", stderr: "pipe", env: { PATH: "/usr/bin:/bin" } });
  const out = r.stdout.toString();
  const i = out.lastIndexOf("\n");
  const status = Number(out.slice(i + 1));
  let parsed: unknown = out.slice(0, i);
  try {
    parsed = JSON.parse(out.slice(0, i));
  } catch {}
  if (!status) throw new Error(`curl as ${u.name} failed: ${r.stderr.toString()}`);
  return { status, body: parsed };
}

/** Let every user connect to a test agent's socket (the test's stand-in for group `substrate`). */
export function openSocket(socket: string): void {
  chmodSync(socket, 0o666);
}

export const out = (a: ApiAnswer): string => Buffer.from(a.body?.stdout_b64 ?? "", "base64").toString("utf8");
export const err = (a: ApiAnswer): string => Buffer.from(a.body?.stderr_b64 ?? "", "base64").toString("utf8");

/** Run a bash line as `u` in its home (HOME set); throws with its stderr when it fails. */
export function shAs(u: TestUser, line: string): string {
  const r = Bun.spawnSync(["setpriv", `--reuid=${u.uid}`, `--regid=${u.gid}`, "--init-groups", "--", "bash", "-c", line], {
    cwd: u.home,
    env: { HOME: u.home, PATH: "/usr/bin:/bin" },
    stdout: "pipe",
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`as ${u.name}: ${line}: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

export interface RootlessAgent {
  socket: string;
  stop(): Promise<void>;
}

/**
 * `u`'s own rootless agent on the rootless default socket (~/.substrate/run/substrate.sock:
 * inside the home a world shows read-only), started as `u` and ready when this resolves.
 */
export async function startRootlessAgent(u: TestUser): Promise<RootlessAgent> {
  const { agentArgv } = await import("../helpers/agent.ts");
  const { AgentClient } = await import("../../src/api/client.ts");
  const run = join(u.home, ".substrate/run");
  shAs(u, `mkdir -p ${run} && chmod 700 ${run}`);
  const socket = join(run, "substrate.sock");
  const proc = Bun.spawn(["setpriv", `--reuid=${u.uid}`, `--regid=${u.gid}`, "--init-groups", "--", ...agentArgv(), "--listen", socket, "--state-dir", join(run, "state")], {
    env: { HOME: u.home, PATH: "/usr/local/bin:/usr/bin:/bin", SUBSTRATE_OVERLAY_DIR: join(run, "overlay"), BUN_GC_TIMER_DISABLE: "1" },
    stdout: "ignore",
    stderr: "pipe",
  });
  const client = new AgentClient(socket);
  for (let i = 0; i < 400; i++) {
    if (proc.exitCode !== null) throw new Error(`rootless agent exited ${proc.exitCode}`);
    try {
      await client.capabilities(500);
      break;
    } catch {
      await Bun.sleep(25);
    }
  }
  return {
    socket,
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}
