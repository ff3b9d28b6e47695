/**
 * `substrate -c 'cmd'`: parse → the host pipeline (src/run/) → exit code. The pipeline
 * gates the command (terminal prompt), builds its world from the policy, writes its span,
 * and runs it in the world (or, world disabled/unavailable, on the host, unless required:
 * exit 3). Output is streamed to this terminal.
 */
import { runIntent } from "../run/index.ts";

export interface RunOptions {
  cmd: string;
  /** `--require-approval`: every command needs an approval (unless auto-approved). */
  requireApproval?: boolean;
  worldFlag?: boolean;
  /** `--isolated`: a fresh overlay world; the changes wait for `substrate apply`. */
  isolated?: boolean;
  /** `--pty`: the command gets a PTY in the world (raw terminal, resize). */
  pty?: boolean;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

export async function runCommandLine(o: RunOptions): Promise<number> {
  const out = await runIntent({
    what: { cmd: o.cmd },
    io: o.pty ? "pty" : "pipes",
    component: "shell",
    asker: "tty",
    ...(o.cwd ? { cwd: o.cwd } : {}),
    ...(o.env ? { env: o.env } : {}),
    ...(o.worldFlag !== undefined ? { worldFlag: o.worldFlag } : {}),
    isolated: o.isolated === true,
    requireApproval: o.requireApproval === true,
  });
  return out.exit;
}
