/**
 * The CLI's fast path (issue 17 "The hot path"): a plain `substrate -c CMD [ARG0 ARG…]` — and
 * the bash shim's `bash -c CMD …` (agents) — without loading the policy, the broker, zod, the
 * span machinery or the `ws` client. The world agent gates every request itself anyway
 * (agent/policyd.ts: the caller's policy, as the caller) and builds the world from the policy
 * when the request brings none; so this file sends one `/v1/stream` start (Bun's own WebSocket,
 * pipes) with `host_span`: "the host did not gate this; make the host's decision (the terminal
 * asker's, src/run/agent-gate.ts) and write the host's spans of it into my trace, as me".
 * docs/ARCHITECTURE.md "The fast path" has the why.
 *
 * It relays stdout (binary frames), stderr, stdin (after `started`, as it arrives, then `eof`),
 * SIGINT/SIGTERM/SIGHUP (to the command's process group, as the bash entry does), the exit
 * code and the end-of-command blocked-egress line. It FALLS BACK to the full pipeline
 * (returns null, nothing ran, stdin untouched) for anything it does not handle:
 *   - a form other than `-c CMD …` (other bash options, --pty/--isolated/--require-approval,
 *     --world/--no-world, subcommands), a terminal on stdin (PTY io, approval prompts),
 *     SUBSTRATE_WORLD set (host runs, inside a world), SUBSTRATE_HOME or a HOME that is not the
 *     passwd home (the agent reads the caller's policy and config from the passwd home), an
 *     agent side channel (src/cli/bash-side.ts), not Linux;
 *   - no agent listening (the pipeline's ensure-ready starts one), an agent that does not
 *     know `host_span`;
 *   - every refusal before the command started: a deny, an approval, a policy that isolates
 *     it, a policy selection notice, an invalid policy, a world that cannot start — the
 *     pipeline then decides and prints exactly what it always did (the agent writes no span
 *     of a command it did not start).
 *
 * Keep the imports light (what `bun build --splitting` puts in this chunk is what every
 * `substrate -c` loads): node builtins and zod-free modules only.
 */
import { fstatSync, readFileSync, writeSync } from "node:fs";
import { effectiveConfig } from "../config.ts";
import { pathsOf } from "../settings.ts";
import { newSpanId } from "../contract/ids.ts";
import { blockedEgressLine } from "../contract/egress-line.ts";
import { wsUrl } from "../api/address.ts";
import { SpanContext } from "../trace/span.ts";
import { currentUmask, envHash, worldImageVersion } from "../trace/replay-parts.ts";
import { versionInfo } from "../version.ts";
import { worldEnv } from "../run/world-env.ts";
import { exitForError } from "../run/exit-codes.ts";
import { mark, dumpTiming } from "../run/timing.ts";
import { CliError, ExitCode } from "../errors.ts";
import { SHELL_NAMES, shellNameOf, worldArgv0 } from "./bash.ts";
import { sideChannels } from "./bash-side.ts";
import type { BashInvocation } from "./bash-args.ts";

type Env = Record<string, string | undefined>;
const FORWARDED: NodeJS.Signals[] = ["SIGTERM", "SIGINT", "SIGHUP"];
/** stdin frames in flight before we wait (the socket's buffer, not our memory, holds the rest) */
const STDIN_HIGH_WATER = 4 * 1024 * 1024;

/**
 * stdin is a pipe, a socket, a file or a memory device (/dev/null): forwarded as it arrives.
 * Anything else — a terminal above all (PTY io, approval prompts), or an unknown character
 * device — is the pipeline's. (node:tty's isatty costs ~5 ms of startup in a compiled Bun.)
 */
function stdinForwardable(): boolean {
  try {
    const st = fstatSync(0);
    if (st.isFIFO() || st.isSocket() || st.isFile()) return true;
    return st.isCharacterDevice() && Math.floor(st.rdev / 256) === 1; // major 1: null, zero, full, (u)random
  } catch {
    return false;
  }
}

/**
 * Write all of `b` to fd (1 or 2), blocking: a slow reader holds us, so we stop reading the
 * socket and the agent's back-pressure pauses the command (no unbounded buffer here). Never
 * process.stdout/stderr: touching them costs ~12 ms of startup in a compiled Bun (measured).
 */
function writeAll(fd: number, b: Uint8Array): void {
  let off = 0;
  while (off < b.length) {
    try {
      off += writeSync(fd, b, off, b.length - off);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "EAGAIN") {
        Bun.sleepSync(1);
        continue;
      }
      return; // EPIPE and the like: the reader is gone, as for any shell
    }
  }
}
const say = (l: string) => writeAll(2, Buffer.from(`substrate: ${l}\n`));

/**
 * This uid's home as /etc/passwd has it — the agent's caller home (agent/caller.ts asks NSS,
 * `getent`); a user only NSS knows (LDAP, SSSD) is not found here: the pipeline takes it.
 * (Bun's os.userInfo().homedir answers $HOME.)
 */
function passwdHome(): string | null {
  const uid = String(process.getuid?.() ?? -1);
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const f = line.split(":");
      if (f[2] === uid && f.length >= 7) return f[5]!;
    }
  } catch {}
  return null;
}

/** What the fast path runs, or null: the full pipeline takes it (see the header). */
export function fastPlan(argv: string[], argv0: string, env: Env = process.env): { argv: string[]; cwd: string; socket: string } | null {
  if (argv[0] !== "-c" || argv.length < 2 || /^[-+]/.test(argv[1]!)) return null;
  if (process.platform !== "linux" || env.SUBSTRATE_TEST_LIMA_BACKEND) return null;
  if (env.SUBSTRATE_WORLD !== undefined || env.SUBSTRATE_HOME !== undefined) return null;
  if (!stdinForwardable()) return null;
  if (!env.HOME || env.HOME !== passwdHome()) return null;
  if (Object.keys(sideChannels({ mode: "command", command: argv[1] } as BashInvocation, env)).length) return null;
  let cfg;
  try {
    cfg = effectiveConfig({ env: env as NodeJS.ProcessEnv });
  } catch {
    return null; // a broken config.toml: the pipeline says so
  }
  if (!cfg.world_enabled) return null;
  const shell = shellNameOf(argv0);
  const name = shell ?? "bash";
  const first = worldArgv0(name, SHELL_NAMES[name] ?? "/bin/bash", env.PATH, shell ? argv0 : "bash");
  return { argv: [first, ...argv], cwd: process.cwd(), socket: cfg.socket_path };
}

/** Run a plain `-c` through the agent; null = nothing ran, take the full pipeline. */
export async function fastPath(argv: string[], argv0: string): Promise<number | null> {
  const env: Env = { ...process.env };
  const plan = fastPlan(argv, argv0, env);
  if (!plan) return null;
  mark("fast");
  // The same span identity the pipeline's plan() gives a command (trace/span.ts, contract/ids.ts).
  const ctx = SpanContext.fromEnv(env);
  const spanId = newSpanId();
  const start = {
    type: "start",
    argv: plan.argv,
    cwd: plan.cwd,
    env: { ...worldEnv(env, plan.cwd), ...ctx.envFor(spanId) },
    agent_id: env.SUBSTRATE_AGENT_ID || "human",
    pty: false,
    host_span: {
      span_id: spanId,
      session_id: ctx.session_id,
      ...(ctx.parent_span ? { parent_span: ctx.parent_span } : {}),
      component: "shell",
      trace: pathsOf(env).trace,
      replay: { path: env.PATH ?? null, env_hash: envHash(env), umask: currentUmask(), locale: env.LC_ALL || env.LANG || null, world_image_version: worldImageVersion(versionInfo()) },
    },
  };
  const code = await relay(plan.socket, JSON.stringify(start));
  if (code !== null) dumpTiming();
  return code;
}

function relay(socket: string, startLine: string): Promise<number | null> {
  return new Promise<number | null>((resolve, reject) => {
    let ws: WebSocket;
    try {
      ws = new WebSocket(wsUrl(socket, "/v1/stream"));
    } catch {
      return resolve(null);
    }
    ws.binaryType = "arraybuffer";
    let opened = false;
    let started = false;
    let signalled = false;
    let fallback = false;
    let exitCode: number | undefined;
    const handlers: [NodeJS.Signals, () => void][] = [];
    const open = () => ws.readyState === WebSocket.OPEN;

    const pumpStdin = async () => {
      try {
        for await (const chunk of Bun.stdin.stream()) {
          if (!open()) return;
          ws.send(chunk);
          while (open() && ws.bufferedAmount > STDIN_HIGH_WATER) await Bun.sleep(1);
        }
      } catch {
        // stdin closed or unreadable: the command gets an empty one
      }
      if (open()) ws.send('{"type":"eof"}');
    };

    ws.onopen = () => {
      opened = true;
      mark("open");
      ws.send(startLine);
      // TERM/INT/HUP reach the command's process group in the world (its own traps run), as
      // the bash entry's pipeline does; the command's exit code (128+N) is ours.
      for (const sig of FORWARDED) {
        const fwd = () => {
          signalled = true;
          if (open()) ws.send(JSON.stringify({ type: "signal", signal: sig }));
        };
        process.on(sig, fwd);
        handlers.push([sig, fwd]);
      }
    };
    ws.onmessage = (ev: MessageEvent) => {
      const d = ev.data;
      if (typeof d !== "string") {
        writeAll(1, new Uint8Array(d as ArrayBuffer));
        return;
      }
      let m: { type?: string; code?: number | string; data_b64?: string; message?: string; hint?: string; egress?: { blocked?: Parameters<typeof blockedEgressLine>[0] } };
      try {
        m = JSON.parse(d);
      } catch {
        return;
      }
      switch (m.type) {
        case "started":
          started = true;
          mark("started");
          void pumpStdin();
          break;
        case "stderr":
          if (m.data_b64) writeAll(2, Buffer.from(m.data_b64, "base64"));
          break;
        case "exit": {
          mark("result");
          exitCode = typeof m.code === "number" ? m.code : 1;
          // Issue 15 (EGRESS): one line at the end for what the world's gateway blocked.
          const blocked = m.egress?.blocked ? blockedEgressLine(m.egress.blocked) : null;
          if (blocked) say(blocked);
          break;
        }
        case "error":
          // Refused before the command started: nothing ran — the pipeline decides and speaks.
          if (!started && !signalled) {
            fallback = true;
            break;
          }
          if (m.message) say(m.message);
          if (m.hint) say(`hint: ${m.hint}`);
          exitCode ??= exitForError(String(m.code));
          break;
      }
    };
    ws.onclose = () => {
      for (const [sig, fwd] of handlers) process.off(sig, fwd);
      if (!opened || fallback) return resolve(null);
      if (exitCode !== undefined) return resolve(exitCode);
      reject(new CliError(ExitCode.UNAVAILABLE, "the world agent closed the stream before the command finished", "run `substrate world doctor`"));
    };
    ws.onerror = () => {
      // before `open`: no agent there (or not this protocol) — `close` follows and falls back
    };
  });
}
