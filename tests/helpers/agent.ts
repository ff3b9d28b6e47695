/**
 * Start a real world agent for a test on a private socket and state dir, and stop exactly
 * that process afterwards. Uses the compiled agent when `make build-native` produced one
 * (what users run), else the source.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { AgentClient } from "../../src/api/client.ts";
import { runnable } from "./runnable.ts";

export const ROOT = resolve(import.meta.dir, "../..");
export const BUN = process.execPath;
const arch = process.arch === "arm64" ? "arm64" : "x64";
export const AGENT_BIN = join(ROOT, "dist", `substrate-world-agent-linux-${arch}`);
export const HOST_BIN = join(ROOT, "dist", `substrate-linux-${arch}`);

// Other uids run these (a throwaway user, world root in a user namespace): from a clone that
// others cannot traverse they come from a mirror of the checkout (runnable.ts, issue 18 1b).
export const agentArgv = (): string[] => (existsSync(AGENT_BIN) ? [runnable(AGENT_BIN)] : [runnable(BUN), runnable(join(ROOT, "agent/main.ts"), false)]);
export const hostArgv = (): string[] => (existsSync(HOST_BIN) ? [runnable(HOST_BIN)] : [runnable(BUN), runnable(join(ROOT, "src/main.ts"), false)]);

export interface TestAgent {
  pid: number;
  socket: string;
  stateDir: string;
  dir: string;
  client: AgentClient;
  proc: ReturnType<typeof Bun.spawn>;
  stderr(): string;
  stop(): Promise<void>;
}

export async function startAgent(o: { env?: Record<string, string>; argv?: string[]; launcher?: string[]; socket?: string; stateDir?: string } = {}): Promise<TestAgent> {
  const dir = mkdtempSync(join(tmpdir(), "substrate-test-"));
  // Traversable (not listable) like /run: user-namespace worlds run as the project owner.
  chmodSync(dir, 0o711);
  const socket = o.socket ?? join(dir, "agent.sock");
  const stateDir = o.stateDir ?? join(dir, "state");
  const argv = [...(o.launcher ?? []), ...(o.argv ?? agentArgv()), ...(o.launcher ? [] : ["--listen", socket]), "--state-dir", stateDir];
  // Isolated results go to a per-agent overlay base on disk (never the product's
  // /var/lib/substrate/overlay), removed at stop: tests leave nothing behind.
  let overlayBase: string | undefined;
  if (!o.env?.SUBSTRATE_OVERLAY_DIR && !process.env.SUBSTRATE_OVERLAY_DIR) {
    mkdirSync("/var/lib/substrate", { recursive: true });
    overlayBase = mkdtempSync("/var/lib/substrate/test-overlay-");
  }
  const proc = Bun.spawn(argv, {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...(overlayBase ? { SUBSTRATE_OVERLAY_DIR: overlayBase } : {}), ...o.env },
  });
  let err = "";
  void (async () => {
    for await (const c of proc.stderr as ReadableStream<Uint8Array>) err += new TextDecoder().decode(c);
  })();
  const client = new AgentClient(socket);
  for (let i = 0; i < 400; i++) {
    if (proc.exitCode !== null) throw new Error(`agent exited ${proc.exitCode}: ${err}`);
    try {
      await client.capabilities(500);
      break;
    } catch {
      await Bun.sleep(25);
    }
  }
  return {
    pid: proc.pid,
    socket,
    stateDir,
    dir,
    client,
    proc,
    stderr: () => err,
    async stop() {
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 10_000);
      await proc.exited;
      clearTimeout(t);
      rmSync(dir, { recursive: true, force: true });
      if (overlayBase) rmSync(overlayBase, { recursive: true, force: true });
    },
  };
}

/** Mount entries that mention a path (leak checks). */
export const mountsUnder = (path: string): string[] =>
  (require("node:fs").readFileSync("/proc/self/mountinfo", "utf8") as string).split("\n").filter((l) => l.includes(path));

/** PIDs whose command line mentions `needle` (leak checks; never used to kill). */
export function pidsMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      if (require("node:fs").readFileSync(`/proc/${p}/cmdline`, "utf8").includes(needle)) out.push(Number(p));
    } catch {}
  }
  return out;
}

/** Retry a probe until it succeeds or the deadline passes (startup races, not timing asserts). */
export async function eventually<T>(probe: () => Promise<T>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      return await probe();
    } catch (e) {
      if (Date.now() > end) throw e;
      await Bun.sleep(25);
    }
  }
}

export const b64 = (s: string): string => Buffer.from(s, "base64").toString("utf8");

export function tempProject(prefix = "substrate-proj-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}
