/**
 * Issue 16: an agent emulation suite. Each test spawns the entry exactly as that agent does —
 * its argv, its wrapper script text, its env, stdin /dev/null or a PTY, its kill by process
 * group — and checks what the agent would see: output, exit code, the cwd file / snapshot /
 * bgpids behaviour, and that the command ran in the world (hostname, a write outside the
 * project refused). Sources (verified, docs/AGENTS.md):
 *   Claude Code  closed source: wrapper from `ps` output in anthropics/claude-code#57450 / #47689 and the
 *                reconstructed bashProvider (getSpawnArgs: ['-c', ...(snapshot ? [] : ['-l']), cmd])
 *   Codex        codex-rs/core/src/shell.rs derive_exec_args ([shell, "-lc", cmd]), shell_snapshot.rs
 *                (capture: -lc script, stdin null; validate: -c 'set -e; . "<path>"')
 *   Gemini CLI   packages/core/src/tools/shell.ts wrapCommandForBackgroundPIDs, utils/shell-utils.ts
 *                getShellConfiguration (bash, ['-c']), services/shellExecutionService.ts env
 *   Goose        crates/goose/.../developer/shell.rs (GOOSE_SHELL -c; probe -l -i -c 'echo $PATH')
 *   Aider        aider/run_cmd.py run_cmd_pexpect: pexpect.spawn($SHELL, ["-i", "-c", cmd])
 *   OpenHands    openhands/runtime/utils/bash.py (interactive bash on a terminal, PROMPT_COMMAND/PS1 JSON)
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { entryFixture, run, until, worldHas, type EntryFixture } from "./bash-entry-helpers.ts";

let f: EntryFixture;
let tmp: string; // the agents' host $TMPDIR
beforeAll(async () => {
  f = await entryFixture();
  mkdirSync(join(f.proj, "a", "b"), { recursive: true });
  tmp = mkdtempSync("/tmp/substrate-agent-tmp-");
});
afterAll(async () => {
  await f.cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

const inWorld = (out: string) => expect(out).toMatch(/substrate-[0-9a-f]{8}/);
const outside = () => `/opt/substrate-emul-${process.pid}-${Math.random().toString(16).slice(2, 8)}`;

/** Kill a detached entry's process group the agent's way and check the world's tree is gone. */
async function killGroupChecked(argv: string[], env: Record<string, string>, marker: string, sig: NodeJS.Signals): Promise<void> {
  const p = Bun.spawn(argv, { cwd: f.proj, env, stdin: "ignore", stdout: "pipe", stderr: "pipe", detached: true });
  expect(await until(() => worldHas(f, marker))).toBe(true);
  process.kill(-p.pid, sig);
  if (sig !== "SIGKILL") setTimeout(() => { try { process.kill(-p.pid, "SIGKILL"); } catch {} }, 3000); // tree-kill's escalation
  await p.exited;
  expect(await until(() => !worldHas(f, marker))).toBe(true);
}

describe("Claude Code", () => {
  const claudeQuote = (cmd: string) => `'${cmd.replace(/'/g, `'"'"'`)}'`;
  const snapshot = () => join(f.home, ".claude", "shell-snapshots", "snapshot-bash-1768756242719-p4cllc.sh");
  const wrapper = (cmd: string, cwdFile: string, withSnapshot: boolean) =>
    `${withSnapshot ? `source ${snapshot()} 2>/dev/null || true && ` : ""}shopt -u extglob 2>/dev/null || true && { \\builtin unalias -- 'unsetenv'; \\builtin unset -f -- 'unsetenv'; } >/dev/null 2>&1 || true && eval ${claudeQuote(cmd)} < /dev/null && pwd -P >| ${cwdFile}`;
  const env = () => f.env({ SHELL: f.shim, CLAUDECODE: "1", GIT_EDITOR: "true", TMPDIR: tmp, CLAUDE_CODE_SHELL: f.shim });
  const claude = (args: string[]) => run([f.shim, ...args], { cwd: f.proj, env: env(), stdin: "devnull" });

  test("the shell probe `<CLAUDE_CODE_SHELL> --version` exits 0 (the path contains bash)", () => {
    expect(f.shim).toContain("bash");
    const r = claude(["--version"]);
    expect(r.code).toBe(0);
    expect(r.out).toStartWith("GNU bash");
  });

  test("snapshot creation (`-c -l SCRIPT` writing ~/.claude/shell-snapshots) leaves no host file: Claude then runs every command with -c -l", () => {
    const snap = snapshot();
    const script = `SNAPSHOT_FILE=${snap}; source "${join(f.home, ".bashrc")}" < /dev/null; echo "# Snapshot file" >| "$SNAPSHOT_FILE"; declare -f >> "$SNAPSHOT_FILE"; echo "export PATH=$PATH" >> "$SNAPSHOT_FILE"`;
    claude(["-c", "-l", script]);
    expect(existsSync(snap)).toBe(false);
  });

  for (const withSnapshot of [false, true])
    test(`a command (${withSnapshot ? "snapshot: `-c WRAPPER`" : "no snapshot: `-c -l WRAPPER`"}): output, exit 0, cwd file written on the host with the world's pwd -P`, () => {
      if (withSnapshot) {
        // a snapshot Claude made on the host: the world does not see it, `source … || true` carries on
        mkdirSync(join(f.home, ".claude", "shell-snapshots"), { recursive: true });
        writeFileSync(snapshot(), "# Snapshot file\nalias ll='ls -l'\n");
      }
      const cwdFile = join(tmp, `claude-${withSnapshot ? "1aad" : "2bbe"}-cwd`);
      const w = wrapper(`cd a/b && echo "it's here" && hostname`, cwdFile, withSnapshot);
      const r = claude(withSnapshot ? ["-c", w] : ["-c", "-l", w]);
      expect(r.code).toBe(0);
      expect(r.out.split("\n")[0]).toBe("it's here");
      inWorld(r.out);
      expect(readFileSync(cwdFile, "utf8").trim()).toBe(realpathSync(join(f.proj, "a", "b")));
    });

  test("a failing command: its exit code, and the cwd file is NOT written (Claude's && chain)", () => {
    const cwdFile = join(tmp, "claude-3ccf-cwd");
    const r = claude(["-c", wrapper("cd a && exit 3", cwdFile, false)]);
    expect(r.code).toBe(3);
    expect(existsSync(cwdFile)).toBe(false);
  });

  test("a write outside the project is refused (a pipe command, < /dev/null moved onto its first part)", () => {
    const o = outside();
    const r = claude(["-c", wrapper(`echo x < /dev/null | tee ${o}`, join(tmp, "claude-4dd0-cwd"), false)]);
    expect(r.code).not.toBe(0);
    expect(existsSync(o)).toBe(false);
  });

  test("tree-kill of the process group (SIGTERM) ends the command's tree in the world", async () => {
    const marker = `claude-kill-${process.pid}`;
    await killGroupChecked([f.shim, "-c", wrapper(`exec -a ${marker} sleep 300`, join(tmp, "claude-5ee1-cwd"), false)], env(), marker, "SIGTERM");
  });
});

describe("Codex CLI", () => {
  const env = () => f.env({ TMPDIR: tmp, CODEX_HOME: join(f.home, ".codex") });
  // codex-rs shell_snapshot.rs bash_snapshot_script (beginning; the rest only prints more of the same)
  const SNAPSHOT_SCRIPT = `if [ -z "$BASH_ENV" ] && [ -r "$HOME/.bashrc" ]; then\n  . "$HOME/.bashrc"\nfi\necho '# Snapshot file'\necho '# Unset all aliases to avoid conflicts with functions'\nunalias -a 2>/dev/null || true\necho '# Functions'\ndeclare -f\necho ''\nalias_count=$(alias -p | wc -l | tr -d ' ')\necho "# aliases $alias_count"\nalias -p\n`;

  test("[bash, -lc, CMD] with stdin /dev/null: output, stderr apart, exit code, in the world", () => {
    const r = run([f.shim, "-lc", "cd a && pwd && echo warn >&2 && hostname && exit 4"], { cwd: f.proj, env: env(), stdin: "devnull" });
    expect(r.code).toBe(4);
    expect(r.out.split("\n")[0]).toBe(join(f.proj, "a"));
    expect(r.err.replace(/^(pyenv|rbenv|nvm): .*\n/gm, "")).toBe("warn\n");
    inWorld(r.out);
  });

  test("shell snapshot: capture works (Codex writes the file on the host); validation `-c 'set -e; . PATH'` either fails (HOME not in the world: Codex drops it, keeps -lc) or the snapshot-wrapped command works", () => {
    const cap = run([f.shim, "-lc", SNAPSHOT_SCRIPT], { cwd: f.proj, env: env(), stdin: "devnull" });
    expect(cap.code).toBe(0);
    expect(cap.out).toContain("# Snapshot file");
    const dir = join(f.home, ".codex", "shell_snapshots");
    mkdirSync(dir, { recursive: true });
    const tmpPath = join(dir, "0199a1b2-thread.tmp-1");
    writeFileSync(tmpPath, cap.out.slice(cap.out.indexOf("# Snapshot file")));
    const val = run([f.shim, "-c", `set -e; . "${tmpPath}"`], { cwd: f.proj, env: env(), stdin: "devnull" });
    if (val.code !== 0) return; // the world does not see this HOME: Codex drops the snapshot, commands stay `-lc`
    // the world sees the snapshot (a home the fs view shows): Codex then wraps every command
    // (tools/runtimes/mod.rs maybe_wrap_shell_lc_with_snapshot) and re-execs the shell BY ITS HOST PATH
    const wrapped = run([f.shim, "-c", `if . '${tmpPath}' >/dev/null 2>&1; then :; fi\n\nexec '${f.shim}' -c 'echo wrapped; hostname'`], { cwd: f.proj, env: env(), stdin: "devnull" });
    expect(wrapped.code).toBe(0);
    expect(wrapped.out).toStartWith("wrapped\n");
  });

  test("a write outside the project is refused; the process group kill ends the tree", async () => {
    const o = outside();
    expect(run([f.shim, "-lc", `touch ${o}`], { cwd: f.proj, env: env(), stdin: "devnull" }).code).not.toBe(0);
    expect(existsSync(o)).toBe(false);
    const marker = `codex-kill-${process.pid}`;
    await killGroupChecked([f.shim, "-lc", `exec -a ${marker} sleep 300`], env(), marker, "SIGKILL");
  });
});

describe("Gemini CLI", () => {
  const wrap = (cmd: string, file: string) => `_bgpids_file=${file}\n(\n  trap 'jobs -p > "$_bgpids_file"' EXIT\n${cmd.trim()}\n)\n__code=$?\nexit $__code`;
  const env = () => f.env({ GEMINI_CLI: "1", TERM: "xterm-256color", PAGER: "cat", GIT_PAGER: "cat", GIT_TERMINAL_PROMPT: "0", TMPDIR: tmp });
  const bgFile = () => join(mkdtempSync(join(tmp, "gemini-shell-")), "bgpids.tmp");

  test("`bash -c WRAPPER` (bash from PATH): output, exit code; a background job's world PID never reaches the host bgpids file", () => {
    const file = bgFile();
    const marker = `gemini-bg-${process.pid}`;
    const r = run(["bash", "-c", wrap(`(exec -a ${marker} sleep 300) &\necho started; hostname; exit 3`, file)], { cwd: f.proj, env: env(), stdin: "devnull" });
    expect(r.code).toBe(3);
    expect(r.out.split("\n")[0]).toBe("started");
    inWorld(r.out);
    expect(r.err).toBe(""); // the trap found its directory: no error in the result
    expect(readFileSync(file, "utf8")).toBe(""); // exists (no "missing background pid output"), and no PIDs
    run(["bash", "-c", `pkill -f '^${marker}' || true`], { cwd: f.proj, env: env() });
  });

  test("under a PTY (node-pty): output and exit code", async () => {
    const file = bgFile();
    let out = "";
    const p = Bun.spawn(["bash", "-c", wrap("tty >/dev/null && echo on-a-tty; hostname", file)], { cwd: f.proj, env: env(), terminal: { cols: 120, rows: 30, data: (_t, d) => void (out += new TextDecoder().decode(d)) } });
    expect(await p.exited).toBe(0);
    expect(out).toContain("on-a-tty");
    inWorld(out);
    expect(readFileSync(file, "utf8")).toBe("");
  });

  test("a write outside the project is refused; killProcessGroup (SIGTERM then SIGKILL) ends the tree", async () => {
    const o = outside();
    expect(run(["bash", "-c", wrap(`echo x > ${o}`, bgFile())], { cwd: f.proj, env: env(), stdin: "devnull" }).code).not.toBe(0);
    expect(existsSync(o)).toBe(false);
    const marker = `gemini-kill-${process.pid}`;
    await killGroupChecked(["bash", "-c", wrap(`exec -a ${marker} sleep 300`, bgFile())], env(), marker, "SIGTERM");
  });
});

describe("Goose", () => {
  const env = () => f.env({ GOOSE_SHELL: f.shim, TMPDIR: tmp });

  test("the login PATH probe `-l -i -c 'echo $PATH'` (stdin null, new session): the last line is a PATH", () => {
    const p = Bun.spawnSync(["setsid", f.shim, "-l", "-i", "-c", "echo $PATH"], { cwd: f.proj, env: env(), stdin: "ignore", stdout: "pipe", stderr: "ignore" });
    expect(p.exitCode).toBe(0);
    const last = p.stdout.toString().split("\n").filter((l) => l.trim()).pop()!;
    expect(last).toContain("/usr/bin");
  });

  test("`$GOOSE_SHELL -c CMD`: stdout and stderr apart, exit code, in the world; writes outside refused", () => {
    const r = run([f.shim, "-c", "echo out; echo err >&2; hostname; exit 2"], { cwd: f.proj, env: env(), stdin: "devnull" });
    expect(r.code).toBe(2);
    expect(r.out.split("\n")[0]).toBe("out");
    expect(r.err).toBe("err\n");
    inWorld(r.out);
    const o = outside();
    expect(run([f.shim, "-c", `mkdir ${o}`], { cwd: f.proj, env: env() }).code).not.toBe(0);
    expect(existsSync(o)).toBe(false);
  });

  test("Goose's truncated-output file lives in its host tempdir: a `cat` of it from the world fails (documented; Goose's own file tools read it)", () => {
    const dir = mkdtempSync(join(tmp, ".tmp"));
    writeFileSync(join(dir, "stdout-0"), "full output\n");
    const r = run([f.shim, "-c", `cat ${join(dir, "stdout-0")}`], { cwd: f.proj, env: env() });
    expect(r.code).not.toBe(0);
  });

  test("the process group kill ends the tree", async () => {
    const marker = `goose-kill-${process.pid}`;
    await killGroupChecked([f.shim, "-c", `exec -a ${marker} sleep 300`], env(), marker, "SIGKILL");
  });
});

describe("Aider", () => {
  test("pexpect.spawn($SHELL, ['-i', '-c', cmd]) on a PTY: output, exit status, in the world", async () => {
    let out = "";
    const p = Bun.spawn([f.shim, "-i", "-c", "echo aider-ran; hostname; exit 9"], { cwd: f.proj, env: f.env({ SHELL: f.shim, TERM: "xterm" }), terminal: { cols: 80, rows: 24, data: (_t, d) => void (out += new TextDecoder().decode(d)) } });
    expect(await p.exited).toBe(9);
    expect(out).toContain("aider-ran");
    inWorld(out);
    const o = outside();
    const w = Bun.spawn([f.shim, "-i", "-c", `touch ${o}`], { cwd: f.proj, env: f.env({ SHELL: f.shim, TERM: "xterm" }), terminal: { cols: 80, rows: 24, data: () => {} } });
    expect(await w.exited).not.toBe(0);
    expect(existsSync(o)).toBe(false);
  });
});

describe("OpenHands", () => {
  // openhands/events/observation/commands.py CmdOutputMetadata.to_ps1_prompt
  const PS1 = `\n###PS1JSON###\n${JSON.stringify({ pid: "$!", exit_code: "$?", username: "\\u", hostname: "\\h", working_dir: "$(pwd)", py_interpreter_path: '$(which python 2>/dev/null || echo "")' }, null, 2).replace(/"/g, '\\"')}\n###PS1END###\n`;
  // like OpenHands (CMD_OUTPUT_METADATA_PS1_REGEX, ^ in MULTILINE mode): only blocks at a line start; unparseable ones skipped
  const blocks = (s: string) =>
    [...s.replace(/\r/g, "").matchAll(/^###PS1JSON###\n([\s\S]*?)\n###PS1END###/gm)].flatMap((m) => {
      try {
        return [JSON.parse(m[1]!) as Record<string, string>];
      } catch {
        return [];
      }
    });

  test("a persistent interactive bash on a terminal with PROMPT_COMMAND/PS1 JSON: exit codes, working dir and hostname per command", async () => {
    let out = "";
    const p = Bun.spawn([f.shim], { cwd: f.proj, env: f.env({ TERM: "xterm" }), terminal: { cols: 1000, rows: 1000, data: (_t, d) => void (out += new TextDecoder().decode(d)) } });
    expect(await until(() => /[#$] /.test(out), 20_000)).toBe(true);
    p.terminal!.write(`export PROMPT_COMMAND='export PS1="${PS1}"'; export PS2=""\n`);
    expect(await until(() => blocks(out).length >= 1, 20_000)).toBe(true);
    const n0 = blocks(out).length;
    p.terminal!.write("cd a && false\n");
    expect(await until(() => blocks(out).length > n0, 20_000)).toBe(true);
    const m = blocks(out).at(-1)!;
    expect(m.exit_code).toBe("1");
    expect(m.working_dir).toBe(join(f.proj, "a"));
    expect(m.hostname).toMatch(/^substrate-[0-9a-f]{8}$/);
    const n1 = blocks(out).length;
    p.terminal!.write(`echo x > ${outside()}\n`);
    expect(await until(() => blocks(out).length > n1, 20_000)).toBe(true);
    expect(blocks(out).at(-1)!.exit_code).not.toBe("0");
    // tmux kill-session: SIGHUP to the pane's process group ends what runs in the world
    const marker = `openhands-hup-${process.pid}`;
    p.terminal!.write(`(exec -a ${marker} sleep 300)\n`);
    expect(await until(() => worldHas(f, marker))).toBe(true);
    process.kill(-p.pid, "SIGHUP");
    await p.exited;
    expect(await until(() => !worldHas(f, marker))).toBe(true);
  });
});
