/**
 * Issue 16: side channels — files an agent's wrapper writes inside the shell and the agent
 * reads on the host afterwards. The world has its own /tmp and $HOME, so each one is decided
 * here, per agent (docs/AGENTS.md, verified against each agent's own wrapper text):
 *
 * - Claude Code `… && pwd -P >| $TMPDIR/claude-XXXX-cwd`: the wrapper runs unchanged in the
 *   world and writes the world's copy; on success (exit 0, ran in the world) the entry reads
 *   that copy (and removes it) and writes the host file itself. On failure the host file is
 *   not written, like Claude's own `&&` chain.
 * - Gemini CLI `_bgpids_file=$TMPDIR/gemini-shell-XXXX/bgpids.tmp` + `trap 'jobs -p > …' EXIT`:
 *   the dir is made in the world first (else the trap prints an error into every result);
 *   afterwards the world's copy is dropped and the host file is written EMPTY. World PIDs
 *   (another PID namespace) never reach a host file: a host process that later signals them
 *   would hit unrelated host processes.
 * - Claude `~/.claude/shell-snapshots`, Codex `~/.codex/shell_snapshots`, Goose's output dir:
 *   nothing to do here (host-side files Claude/Codex/Goose write and validate themselves; the
 *   world does not see them — docs/AGENTS.md says what that means for each).
 */
import { closeSync, constants, existsSync, lstatSync, openSync, writeSync } from "node:fs";
import { basename, dirname, isAbsolute } from "node:path";
import type { BashInvocation } from "./bash-args.ts";
import type { EntryOutcome } from "./_entry-run.ts";

export interface SideChannels {
  /** Claude's cwd file (host path = world path) */
  claudeCwd?: string;
  /** Gemini's background-PID file */
  geminiBgpids?: string;
}

/** Undo the simple quoting agents put around a path (`'…'`, `"…"`, backslashes). */
function unquote(s: string): string {
  if (s.length >= 2 && ((s[0] === "'" && s.endsWith("'")) || (s[0] === '"' && s.endsWith('"')))) return s.slice(1, -1);
  return s.replace(/\\(.)/g, "$1");
}

/** Claude's cwd file: the wrapper's last step `pwd -P >| <tmp>/claude-<hex>-cwd` (or `<sandbox tmp>/cwd-<id>`). */
export function claudeCwdFile(script: string): string | null {
  const m = /&&\s*pwd -P >\|\s*('[^']+'|"[^"]+"|\S+)\s*$/.exec(script);
  if (!m) return null;
  const p = unquote(m[1]!);
  if (!isAbsolute(p) || !/^(claude-[0-9a-f]+-cwd|cwd-[0-9a-z-]+)$/.test(basename(p))) return null;
  return p;
}

/** Gemini's background-PID file: the wrapper's first line `_bgpids_file=<path>`. */
export function geminiBgpidsFile(script: string): string | null {
  const m = /^_bgpids_file=('[^'\n]+'|"[^"\n]+"|\S+)\n/.exec(script);
  if (!m) return null;
  const p = unquote(m[1]!);
  if (!isAbsolute(p) || basename(p) !== "bgpids.tmp" || !basename(dirname(p)).startsWith("gemini-shell-")) return null;
  return p;
}

/**
 * Where an agent's side-channel file may be: directly in the caller's temp dir ($TMPDIR or
 * /tmp — Node's os.tmpdir()), or (Gemini's mkdtemp dir, Claude's sandbox dir /tmp/claude-<uid>)
 * one level below it. Anything else is not an agent's side channel, and the entry writes no
 * host file for it: the script's text must not choose arbitrary host paths.
 */
function inTmp(p: string, env: Record<string, string | undefined>, nested: RegExp): boolean {
  const roots = [...new Set([(env.TMPDIR || "/tmp").replace(/\/+$/, "") || "/", "/tmp"])];
  const d = dirname(p);
  return roots.some((r) => d === r || (dirname(d) === r && nested.test(basename(d))));
}

export function sideChannels(inv: BashInvocation, env: Record<string, string | undefined>): SideChannels {
  if (inv.mode !== "command" || !inv.command) return {};
  const out: SideChannels = {};
  const cwd = claudeCwdFile(inv.command);
  if (cwd && inTmp(cwd, env, /^claude(-\d+)?$/)) out.claudeCwd = cwd;
  const bg = geminiBgpidsFile(inv.command);
  if (bg && inTmp(bg, env, /^gemini-shell-/) && dirname(bg) !== (env.TMPDIR || "/tmp")) out.geminiBgpids = bg;
  return out;
}

/** Write a host side-channel file: never through a symlink, only in an existing dir of ours. */
function writeHostFile(file: string, text: string): boolean {
  try {
    // a real directory (not a link) that is ours, or a sticky root-owned one such as /tmp
    const d = lstatSync(dirname(file));
    const uid = process.getuid?.();
    if (!d.isDirectory() || !(uid === undefined || d.uid === uid || (d.uid === 0 && (d.mode & 0o1000) !== 0))) return false;
  } catch {
    return false;
  }
  let fd: number;
  try {
    fd = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
  } catch {
    return false; // a symlink planted there (ELOOP), or no permission
  }
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
  return true;
}

type Ctx = { cwd: string; env: Record<string, string | undefined>; worldFlag?: boolean };

/** Before the command: what the world needs for the wrapper to run as it does on the host. */
export async function beforeRun(ch: SideChannels, ctx: Ctx): Promise<void> {
  // The world has its own /tmp: a side-channel file's directory below it (Gemini's mkdtemp dir,
  // a Claude $TMPDIR such as /tmp/claude-1000/) must exist there too, or the wrapper's own
  // write fails and with it the whole command. /tmp itself always exists: no extra call.
  const dirs = [ch.geminiBgpids, ch.claudeCwd].filter((p): p is string => p !== undefined).map(dirname).filter((d) => d !== "/tmp");
  if (dirs.length === 0) return;
  const { runEntry } = await import("./_entry-run.ts");
  await runEntry({
    argv: ["/bin/mkdir", "-p", "--", ...dirs],
    ...ctx,
    io: "buffered",
    component: "shell",
    asker: "api",
    say: () => {},
  }).catch(() => {});
}

/** After the command: write the host-side files the agent reads next. */
export async function afterRun(ch: SideChannels, out: EntryOutcome, ctx: Ctx): Promise<void> {
  if (out.ran !== "world") return; // on the host the wrapper wrote them itself
  const { readWorldFile } = await import("./_entry-run.ts");
  if (ch.claudeCwd) {
    const got = await readWorldFile(ch.claudeCwd, ctx).catch(() => null);
    const dir = got?.trim();
    // only on success, and only a plausible `pwd -P` answer
    if (out.exit === 0 && dir && isAbsolute(dir) && !dir.includes("\n") && existsSync(dir)) writeHostFile(ch.claudeCwd, `${dir}\n`);
  }
  if (ch.geminiBgpids) {
    await readWorldFile(ch.geminiBgpids, ctx).catch(() => null); // read = drop the world's copy
    writeHostFile(ch.geminiBgpids, ""); // no world PIDs, ever
  }
}
