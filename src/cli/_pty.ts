/**
 * The CLI side of `/v1/stream` (protocol: src/contract/stream.ts): `substrate --pty -c`,
 * the interactive shell, and `substrate -c` with piped stdin (pty: false).
 *
 * PTY mode: the user's terminal goes raw (every key, Ctrl-C and Ctrl-Z included, travels as
 * a byte to the world's PTY, whose line discipline turns them into signals for the
 * foreground job — exactly as in a local terminal), SIGWINCH becomes a `resize`, terminal
 * output is written back untouched. The terminal mode is restored on every exit path.
 *
 * Pipe mode: stdin is streamed as it arrives (never read to the end first — a harness that
 * leaves stdin open but silent must not hang `substrate -c true`): the session ends when the
 * command exits, whatever stdin is doing.
 */
import { wsUrl } from "../api/address.ts";
import { WebSocket, type RawData } from "ws";
import { StreamServerMessage, type ErrorCode, type StreamStartInput } from "../contract/index.ts";
import { CliError, ExitCode } from "./_errors.ts";

export interface StreamRunOptions {
  socketPath: string;
  start: StreamStartInput;
  stdin?: NodeJS.ReadStream;
  stdout?: NodeJS.WriteStream;
  stderr?: NodeJS.WriteStream;
  /** PTY output passes through this first (the shell strips its OSC markers here). */
  filter?: (chunk: Buffer) => Buffer;
  /** Forward stdin (default true). */
  forwardStdin?: boolean;
  /** A connect failure: return this instead of throwing (shell fallback). */
  onConnectError?: (e: Error) => void;
}

/** Exit code of a CLI run refused by the agent (docs/EXIT_CODE_TAXONOMY.md). */
export function exitForError(code: ErrorCode): number {
  switch (code) {
    case "bad_request":
    case "not_found":
    case "payload_too_large":
    case "method_not_allowed":
      return ExitCode.USAGE;
    case "denied":
    case "approval_required":
      return ExitCode.DENIED;
    case "unsupported":
      return ExitCode.UNSUPPORTED;
    case "unavailable":
      return ExitCode.UNAVAILABLE;
    default:
      return ExitCode.INTERNAL;
  }
}

export class StreamConnectError extends Error {
  override name = "StreamConnectError";
}

/** Run one stream session to its end; resolves with the command's exit code. */
export function runStream(o: StreamRunOptions): Promise<number> {
  const stdin = o.stdin ?? process.stdin;
  const stdout = o.stdout ?? process.stdout;
  const stderr = o.stderr ?? process.stderr;
  const pty = o.start.pty ?? true;
  const say = (l: string) => stderr.write(`substrate: ${l}\n`);

  return new Promise<number>((resolve, reject) => {
    // The Lima backend's last-resort transport (ssh-tcp) hands out "127.0.0.1:PORT", not a path.
    const url = wsUrl(o.socketPath, "/v1/stream");
    const ws = new WebSocket(url, { perMessageDeflate: false });
    let opened = false;
    let settled = false;
    let exitCode: number | undefined;
    const raw = pty && stdin.isTTY === true;
    const cleanup: (() => void)[] = [];
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      for (const c of cleanup.splice(0).reverse()) {
        try {
          c();
        } catch {}
      }
      fn();
    };

    ws.on("open", () => {
      opened = true;
      const size = stdout.isTTY ? { cols: stdout.columns || 80, rows: stdout.rows || 24 } : {};
      ws.send(JSON.stringify({ ...size, ...o.start, type: "start" }));
      if (raw) {
        stdin.setRawMode(true);
        cleanup.push(() => stdin.setRawMode(false));
        // Killed from outside: never leave the user's terminal raw.
        const onTerm = (sig: NodeJS.Signals) => {
          stdin.setRawMode(false);
          ws.terminate();
          process.exit(128 + (sig === "SIGHUP" ? 1 : 15));
        };
        process.once("SIGTERM", onTerm);
        process.once("SIGHUP", onTerm);
        cleanup.push(() => {
          process.off("SIGTERM", onTerm);
          process.off("SIGHUP", onTerm);
        });
      }
      if (o.forwardStdin !== false) {
        const onData = (b: Buffer) => {
          if (ws.readyState === ws.OPEN) ws.send(b, { binary: true });
        };
        const onEnd = () => {
          if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: "eof" }));
        };
        stdin.on("data", onData);
        stdin.once("end", onEnd);
        stdin.resume();
        cleanup.push(() => {
          stdin.off("data", onData);
          stdin.off("end", onEnd);
          stdin.pause();
          // A pipe left open by the caller must not keep us alive after the command is done.
          (stdin as unknown as { unref?: () => void }).unref?.();
        });
      }
      if (pty && stdout.isTTY) {
        const onWinch = () => {
          if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: "resize", cols: stdout.columns || 80, rows: stdout.rows || 24 }));
        };
        process.on("SIGWINCH", onWinch);
        cleanup.push(() => process.off("SIGWINCH", onWinch));
      }
    });

    ws.on("message", (d: RawData, binary: boolean) => {
      const buf = Array.isArray(d) ? Buffer.concat(d) : Buffer.from(d as ArrayBuffer);
      if (binary) {
        stdout.write(o.filter ? o.filter(buf) : buf);
        return;
      }
      let m: StreamServerMessage;
      try {
        m = StreamServerMessage.parse(JSON.parse(buf.toString("utf8")));
      } catch {
        return;
      }
      if (m.type === "stderr") stderr.write(Buffer.from(m.data_b64, "base64"));
      else if (m.type === "exit") exitCode = m.code;
      else if (m.type === "error") {
        if (raw) stdin.setRawMode(false);
        say(m.message);
        if (m.hint) say(`hint: ${m.hint}`);
        exitCode ??= exitForError(m.code);
      }
    });

    ws.on("close", () => {
      finish(() => {
        if (exitCode !== undefined) resolve(exitCode);
        else reject(new CliError(ExitCode.UNAVAILABLE, "the world agent closed the stream before the command finished", "run `substrate world doctor`"));
      });
    });
    ws.on("error", (e: Error) => {
      if (opened) return; // `close` follows and decides
      finish(() => reject(new StreamConnectError(`cannot open a stream to the world agent at ${o.socketPath}: ${e.message}`)));
    });
  });
}

/**
 * `substrate --pty -c CMD`: like run.ts's `-c` (broker gate, world or host fallback), but
 * through a PTY stream. Isolated commands have no PTY path: they go through `-c` instead.
 */
export async function runPtyCommandLine(o: { cmd: string; worldFlag?: boolean; env?: NodeJS.ProcessEnv; cwd?: string }): Promise<number> {
  const env = o.env ?? process.env;
  const cwd = o.cwd ?? process.cwd();
  const [{ effectiveConfig }, run, { projectDirFor }, broker] = await Promise.all([
    import("../config.ts"),
    import("./run.ts"),
    import("./_project.ts"),
    import("../broker/index.ts"),
  ]);
  const cfg = effectiveConfig({ env, worldFlag: o.worldFlag });
  const gate = await broker.decideForCli({ cmd: o.cmd, cwd, isTTY: Boolean(process.stdin.isTTY), stdin: process.stdin, stderr: process.stderr });
  await broker.recordPolicyEvents(gate.events);
  if (gate.action === "deny") return gate.exitCode ?? ExitCode.DENIED;
  const hostGate = (): number | null => broker.isolationUnavailable(gate, process.stderr);
  if (!cfg.world_enabled) return hostGate() ?? run.runOnHost(o.cmd, cwd, env);
  if (gate.action === "run_isolated") {
    process.stderr.write("substrate: isolated commands run without a PTY\n");
    return run.runCommandLine({ cmd: o.cmd, worldFlag: o.worldFlag, cwd, env });
  }
  const ready = await run.readyOrFallback(cfg, env);
  if (!ready) return hostGate() ?? run.runOnHost(o.cmd, cwd, env);
  try {
    return await runStream({
      socketPath: ready.socketPath,
      start: {
        type: "start",
        cmd: o.cmd,
        cwd,
        env: run.worldEnv(env, cwd),
        agent_id: env.SUBSTRATE_AGENT_ID || "human",
        pty: true,
        world: { project_dir: projectDirFor(cwd), isolate_network: cfg.isolate_network, fs_mode: cfg.world_fs_mode, fs_isolation: cfg.world_fs_isolation },
      },
    });
  } catch (e) {
    if (e instanceof StreamConnectError) throw new CliError(ExitCode.UNAVAILABLE, e.message, "run `substrate world doctor`");
    throw e;
  }
}
