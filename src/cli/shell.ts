/**
 * `substrate` (no command) / `substrate shell`: the user's own shell, interactive, inside
 * the session world, through the PTY stream (_pty.ts). Ctrl-C/Ctrl-Z, job control, vim
 * and resizing behave as in a local terminal because the world has a real PTY and our
 * terminal is raw.
 *
 * Builtins: `cd` and `export` change the shell's own state and never reach a world as a
 * command, so the spec wants them logged as `builtin_command` spans. For bash we export a
 * PROMPT_COMMAND that, after each new history entry starting with `cd`/`export`, prints a
 * private OSC sequence `ESC ] 6973 ; base64(cmd) ; base64(PWD) BEL`. The PTY carries it
 * to us; `OscTap` removes it from the output (the user never sees it) and we write the
 * span. Other shells (zsh, fish) run fine without this hook (documented gap).
 *
 * World unavailable → one message (readyOrFallback) and the same shell on the host, unless
 * the world is required (exit 3).
 */
import { defineCommand } from "citty";
import { ExitCode } from "./_errors.ts";
import { worldFlag } from "./_globals.ts";

const OSC_MARK = Buffer.from("\x1b]6973;");
const BEL = 0x07;

/** bash: report new `cd`/`export` history entries as OSC 6973 (see the header). */
export const PROMPT_HOOK =
  '__sl=$(HISTTIMEFORMAT= builtin history 1); __sk=${__sl%%[!0-9 ]*}; __sk=${__sk// /}; ' +
  'if [ -z "${__si-}" ]; then __si=1; __sn=$__sk; elif [ "$__sn" != "$__sk" ]; then __sn=$__sk; __sc=${__sl#*[0-9]  }; ' +
  'case $__sc in cd|cd\\ *|export|export\\ *) builtin printf \'\\033]6973;%s;%s\\007\' ' +
  '"$(builtin printf %s "$__sc" | base64 -w0)" "$(builtin printf %s "$PWD" | base64 -w0)";; esac; fi';

/**
 * Removes OSC 6973 sequences from a byte stream (they may be split across chunks) and hands
 * their payload to `onMessage`. Bytes that might start a sequence are held back until the
 * next chunk, or flushed by `flushLater` shortly after, so a lone ESC is never stuck.
 */
export class OscTap {
  private carry: Buffer = Buffer.alloc(0);
  private timer?: ReturnType<typeof setTimeout>;
  constructor(
    private readonly onMessage: (payload: string) => void,
    private readonly flushLater?: (b: Buffer) => void,
  ) {}

  push(chunk: Buffer): Buffer {
    if (this.timer) clearTimeout(this.timer);
    const buf = this.carry.length ? Buffer.concat([this.carry, chunk]) : chunk;
    this.carry = Buffer.alloc(0);
    const out: Buffer[] = [];
    let i = 0;
    for (;;) {
      const s = buf.indexOf(OSC_MARK, i);
      if (s < 0) {
        const keep = partialPrefix(buf, i);
        out.push(buf.subarray(i, buf.length - keep));
        this.carry = Buffer.from(buf.subarray(buf.length - keep));
        break;
      }
      out.push(buf.subarray(i, s));
      const e = buf.indexOf(BEL, s);
      if (e < 0) {
        if (buf.length - s > 65536) out.push(buf.subarray(s)); // not ours after all
        else this.carry = Buffer.from(buf.subarray(s));
        break;
      }
      this.onMessage(buf.subarray(s + OSC_MARK.length, e).toString("latin1"));
      i = e + 1;
    }
    if (this.carry.length && this.flushLater) {
      this.timer = setTimeout(() => {
        const c = this.carry;
        this.carry = Buffer.alloc(0);
        if (c.length) this.flushLater!(c);
      }, 50);
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }
}

/** Length of the longest suffix of buf[from..] that is a proper prefix of OSC_MARK. */
function partialPrefix(buf: Buffer, from: number): number {
  for (let k = Math.min(OSC_MARK.length - 1, buf.length - from); k > 0; k--) {
    if (buf.subarray(buf.length - k).equals(OSC_MARK.subarray(0, k))) return k;
  }
  return 0;
}

const b64 = (s: string | undefined): string => (s ? Buffer.from(s, "base64").toString("utf8") : "");

/**
 * The shell goes through the host pipeline like `-c` (src/run/): the same gate, the same
 * session world (policy limits and allowlist), a host command span (component shell, pty)
 * that every command typed in the shell names as its parent; world unavailable → the same
 * shell on the host (unless the world is required).
 */
export async function runShell(o: { worldFlag?: boolean; shell?: string }): Promise<number> {
  const env = process.env;
  const shell = o.shell ?? env.SHELL ?? "/bin/bash";
  const [{ plan }, { execute }, { appendSpan }] = await Promise.all([import("../run/plan.ts"), import("../run/execute.ts"), import("../trace/writer.ts")]);
  const shellEnv: Record<string, string | undefined> = { ...env };
  if (/(^|\/)bash$/.test(shell)) shellEnv.PROMPT_COMMAND = env.PROMPT_COMMAND ? `${PROMPT_HOOK}; ${env.PROMPT_COMMAND}` : PROMPT_HOOK;
  let builtins: { ids(): { session_id: string; span_id: string; parent_span?: string } } | undefined;
  const tap = new OscTap(
    (payload) => {
      const [cmd, pwd] = payload.split(";");
      const line = b64(cmd);
      if (!line || !builtins) return;
      void appendSpan({
        ts: new Date().toISOString(),
        event_type: "builtin_command",
        ...builtins.ids(),
        component: "shell",
        agent_id: env.SUBSTRATE_AGENT_ID || "human",
        cwd: b64(pwd) || undefined,
        cmd: line,
      }).catch(() => {});
    },
    (b) => process.stdout.write(b),
  );
  const p = await plan({
    what: { argv: [shell, "-i"] },
    env: shellEnv,
    io: "pty",
    component: "shell",
    // The same decision as every entry point (and as the agent's own gate): an interactive
    // shell reads code the policy cannot check, so an enforce policy with a deny list refuses
    // it; observe mode logs it and runs it. Typed commands are not gated one by one.
    asker: "tty",
    ...(o.worldFlag !== undefined ? { worldFlag: o.worldFlag } : {}),
    ptyFilter: (b) => tap.push(b),
  });
  builtins = p.span.child(p.spanId); // builtin_command spans are children of the shell's span
  return (await execute(p)).exit;
}

export default defineCommand({
  meta: { name: "shell", description: "Interactive shell inside the world (the default when substrate runs without a command)" },
  args: {
    shell: { type: "string", description: "Shell to run (default $SHELL, else /bin/bash)", valueHint: "PATH" },
    world: { type: "boolean", description: "--world requires the world; --no-world runs the shell on the host" },
  },
  async run({ args, rawArgs }) {
    process.exitCode = await runShell({ worldFlag: worldFlag(args, rawArgs), shell: args.shell });
    if (process.exitCode === undefined) process.exitCode = ExitCode.OK;
  },
});
