/**
 * Issue 16: the ONE setting per coding agent that routes its commands through Substrate
 * (docs/AGENTS.md says why each one, and what was verified in the agent's own source):
 *
 *   claude    ~/.claude/settings.json  env.CLAUDE_CODE_SHELL = ~/.substrate/shims/bash
 *   gemini    ~/.gemini/settings.json  mcpServers.substrate (stdio `substrate mcp`) + tools.exclude run_shell_command
 *   codex     ~/.codex/config.toml     [mcp_servers.substrate] (stdio `substrate mcp`)
 *   goose     ~/.profile               export GOOSE_SHELL=~/.substrate/shims/bash
 *   aider     ~/.profile               alias aider='substrate run -- aider'
 *   openhands (print only)             substrate run -- openhands …
 *
 * `--write` applies it (idempotent: a second write changes nothing) and keeps the file's
 * exact previous bytes (or its absence) in ~/.substrate/agent-setup/<agent>.json; `--undo`
 * puts those bytes back, so write + undo leaves the file byte-identical. If the file changed
 * since the write, undo removes only our setting.
 */
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync, chmodSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";

export interface SetupCtx {
  home: string;
  /** ~/.substrate */
  substrateDir: string;
  /** the shim directory (~/.substrate/shims) */
  shimDir: string;
  /** how to start `substrate` (absolute path of the binary, or bun + main.ts from source) */
  substrate: string[];
}

export interface AgentSetup {
  agent: string;
  /** the file the setting lives in, or null (print-only) */
  file: string | null;
  /** one line: what the setting is */
  summary: string;
  /** the text to show (the setting itself) */
  snippet: string;
  /** the file's content with the setting applied (null: print-only) */
  apply?: (current: string | null) => string;
  /** the content without our setting (undo when the file changed since the write) */
  remove?: (current: string) => string | null;
  /** is this agent routed (its file holds our setting)? */
  routed: (current: string | null) => boolean;
}

const BLOCK_START = "# >>> substrate (issue 16) >>>";
const BLOCK_END = "# <<< substrate <<<";
const sq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** A marked text block (shell rc / TOML), appended once. */
function textBlock(body: string) {
  const block = `${BLOCK_START}\n${body}\n${BLOCK_END}\n`;
  return {
    apply: (cur: string | null) => {
      const c = cur ?? "";
      if (c.includes(BLOCK_START)) return c;
      return `${c}${c && !c.endsWith("\n") ? "\n" : ""}${block}`;
    },
    remove: (cur: string) => {
      const a = cur.indexOf(BLOCK_START);
      if (a < 0) return cur;
      const b = cur.indexOf(BLOCK_END, a);
      return cur.slice(0, a) + cur.slice(b < 0 ? cur.length : b + BLOCK_END.length + 1);
    },
    routed: (cur: string | null) => cur !== null && cur.includes(BLOCK_START),
  };
}

/** A JSON settings file: set/unset one value at a path. */
function jsonSetting(edit: (o: Record<string, any>) => void, unedit: (o: Record<string, any>) => void, isSet: (o: Record<string, any>) => boolean) {
  const parse = (cur: string | null): Record<string, any> => {
    if (cur === null || cur.trim() === "") return {};
    const v = JSON.parse(cur);
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not a JSON object");
    return v;
  };
  return {
    apply: (cur: string | null) => {
      const o = parse(cur);
      if (isSet(o)) return cur!;
      edit(o);
      return `${JSON.stringify(o, null, 2)}\n`;
    },
    remove: (cur: string) => {
      const o = parse(cur);
      unedit(o);
      return `${JSON.stringify(o, null, 2)}\n`;
    },
    routed: (cur: string | null) => {
      try {
        return isSet(parse(cur));
      } catch {
        return false;
      }
    },
  };
}

export function agentSetups(c: SetupCtx): AgentSetup[] {
  const shim = join(c.shimDir, "bash");
  const mcp = { command: c.substrate[0]!, args: [...c.substrate.slice(1), "mcp"] };
  const claude = jsonSetting(
    (o) => ((o.env ??= {}).CLAUDE_CODE_SHELL = shim),
    (o) => {
      if (o.env?.CLAUDE_CODE_SHELL === shim) delete o.env.CLAUDE_CODE_SHELL;
      if (o.env && Object.keys(o.env).length === 0) delete o.env;
    },
    (o) => o.env?.CLAUDE_CODE_SHELL === shim,
  );
  const gemini = jsonSetting(
    (o) => {
      (o.mcpServers ??= {}).substrate = mcp;
      const t = (o.tools ??= {});
      t.exclude = [...new Set([...(t.exclude ?? []), "run_shell_command"])];
    },
    (o) => {
      if (o.mcpServers) delete o.mcpServers.substrate;
      if (o.mcpServers && Object.keys(o.mcpServers).length === 0) delete o.mcpServers;
      if (o.tools?.exclude) o.tools.exclude = o.tools.exclude.filter((x: string) => x !== "run_shell_command");
      if (o.tools?.exclude?.length === 0) delete o.tools.exclude;
      if (o.tools && Object.keys(o.tools).length === 0) delete o.tools;
    },
    (o) => o.mcpServers?.substrate !== undefined && (o.tools?.exclude ?? []).includes("run_shell_command"),
  );
  const toml = (s: string) => JSON.stringify(s);
  const codexBlock = textBlock(`[mcp_servers.substrate]\ncommand = ${toml(mcp.command)}\nargs = [${mcp.args.map(toml).join(", ")}]`);
  const codex = {
    ...codexBlock,
    apply: (cur: string | null) => {
      // a table of that name outside our block would make the file invalid TOML (duplicate table)
      if (cur && !codexBlock.routed(cur) && /^\s*\[mcp_servers\.(substrate|"substrate")\]/m.test(cur)) throw new Error("already has an [mcp_servers.substrate] table of its own; remove it or leave it as it is");
      return codexBlock.apply(cur);
    },
  };
  const goose = textBlock(`export GOOSE_SHELL=${sq(shim)}`);
  const run = c.substrate.map(sq).join(" ");
  const aider = textBlock(`alias aider=${sq(`${run} run -- aider`)}`);
  const profile = join(c.home, ".profile");
  return [
    { agent: "claude", file: join(c.home, ".claude", "settings.json"), summary: "Claude Code: its Bash tool runs `<shim> -c …` (CLAUDE_CODE_SHELL, settings.json env)", snippet: `"env": { "CLAUDE_CODE_SHELL": ${JSON.stringify(shim)} }`, ...claude },
    { agent: "codex", file: join(c.home, ".codex", "config.toml"), summary: "Codex CLI: the substrate MCP server (its shell has no knob but PATH/passwd bash)", snippet: `[mcp_servers.substrate]\ncommand = ${toml(mcp.command)}\nargs = [${mcp.args.map(toml).join(", ")}]`, ...codex },
    { agent: "gemini", file: join(c.home, ".gemini", "settings.json"), summary: "Gemini CLI: the substrate MCP server, its own shell tool excluded (bash is hard-coded)", snippet: JSON.stringify({ mcpServers: { substrate: mcp }, tools: { exclude: ["run_shell_command"] } }, null, 2), ...gemini },
    { agent: "goose", file: profile, summary: "Goose: GOOSE_SHELL (read from the environment)", snippet: `export GOOSE_SHELL=${sq(shim)}`, ...goose },
    { agent: "aider", file: profile, summary: "Aider: no shell knob for its non-TTY path (/bin/sh): start it through `substrate run`", snippet: `alias aider=${sq(`${run} run -- aider`)}`, ...aider },
    { agent: "openhands", file: null, summary: "OpenHands: a persistent interactive bash; start it through `substrate run`", snippet: `${run} run -- openhands …`, routed: () => false },
  ];
}

export const AGENTS = ["claude", "codex", "gemini", "goose", "aider", "openhands"] as const;

const read = (f: string): string | null => (existsSync(f) ? readFileSync(f, "utf8") : null);
const backupFile = (c: SetupCtx, agent: string) => join(c.substrateDir, "agent-setup", `${agent}.json`);

function writeAtomic(file: string, text: string): void {
  mkdirSync(dirname(file), { recursive: true });
  const mode = existsSync(file) ? lstatSync(file).mode & 0o777 : 0o644;
  const tmp = `${file}.substrate-tmp`;
  writeFileSync(tmp, text, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, file);
}

export type SetupResult = { changed: boolean; file: string | null; message: string };

export function writeSetup(c: SetupCtx, s: AgentSetup): SetupResult {
  if (!s.file || !s.apply) return { changed: false, file: null, message: `nothing to write for ${s.agent}: ${s.snippet}` };
  const before = read(s.file);
  let after: string;
  try {
    after = s.apply(before);
  } catch (e) {
    throw new Error(`${s.file}: ${(e as Error).message}; fix or move it, then retry`);
  }
  if (after === before) return { changed: false, file: s.file, message: `${s.agent}: already routed (${s.file})` };
  const bf = backupFile(c, s.agent);
  if (!existsSync(bf)) {
    mkdirSync(dirname(bf), { recursive: true, mode: 0o700 });
    writeFileSync(bf, JSON.stringify({ file: s.file, existed: before !== null, content: before, written: after }), { mode: 0o600 });
  }
  writeAtomic(s.file, after);
  return { changed: true, file: s.file, message: `${s.agent}: routed through substrate (${s.file}; undo: substrate agent setup ${s.agent} --undo)` };
}

export function undoSetup(c: SetupCtx, s: AgentSetup): SetupResult {
  if (!s.file || !s.remove) return { changed: false, file: null, message: `nothing to undo for ${s.agent}` };
  const bf = backupFile(c, s.agent);
  const now = read(s.file);
  if (existsSync(bf)) {
    const b = JSON.parse(readFileSync(bf, "utf8")) as { file: string; existed: boolean; content: string | null; written: string };
    if (now === b.written || now === null) {
      // untouched since our write: the exact bytes from before (or no file at all)
      if (b.existed && b.content !== null) writeAtomic(b.file, b.content);
      else if (now !== null) rmSync(b.file);
      rmSync(bf);
      return { changed: true, file: b.file, message: `${s.agent}: restored ${b.file} as it was` };
    }
    rmSync(bf);
  }
  if (now === null || !s.routed(now)) return { changed: false, file: s.file, message: `${s.agent}: not routed (${s.file})` };
  writeAtomic(s.file, s.remove(now) ?? "");
  return { changed: true, file: s.file, message: `${s.agent}: our setting removed from ${s.file} (it had changed since the write)` };
}

export function statusOf(s: AgentSetup): { agent: string; routed: boolean; file: string | null; present: boolean } {
  const cur = s.file ? read(s.file) : null;
  return { agent: s.agent, routed: s.routed(cur), file: s.file, present: cur !== null };
}

/** ~/.substrate/shims/{bash,sh}: links whose argv[0] is the shell name (compiled binary), else tiny exec scripts (from source). */
export function ensureShellShims(c: SetupCtx, names = ["bash", "sh"]): string[] {
  mkdirSync(c.shimDir, { recursive: true });
  const made: string[] = [];
  for (const n of names) {
    const f = join(c.shimDir, n);
    if (c.substrate.length === 1) {
      const ok = isDanglingLink(f) && readlinkSync(f) === c.substrate[0];
      if (ok) continue;
      if (existsSync(f) || isDanglingLink(f)) rmSync(f);
      symlinkSync(c.substrate[0]!, f);
    } else {
      const text = `#!/bin/bash\n# substrate shell entry (issue 16): argv[0] ${n}\nexec -a ${n} ${c.substrate.map(sq).join(" ")} "$@"\n`;
      if (read(f) === text) continue;
      writeFileSync(f, text, { mode: 0o755 });
      chmodSync(f, 0o755);
    }
    made.push(f);
  }
  return made;
}

function isDanglingLink(f: string): boolean {
  try {
    return lstatSync(f).isSymbolicLink();
  } catch {
    return false;
  }
}
