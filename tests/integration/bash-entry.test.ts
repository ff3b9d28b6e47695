/**
 * Issue 16: the bash entry (the binary named `bash`, and `substrate` with bash's forms) against
 * plain bash running the same command: identical stdout, stderr, exit status, $0 and positional
 * parameters, cwd — and it ran in the world. Then stdin kinds, PTY, streaming, signals and
 * process-group kill, in-world re-entry, the policy, usage.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_POLICY_YAML } from "../../src/broker/default-policy.ts";
import { hostArgv } from "../helpers/agent.ts";
import { entryFixture, run, until, worldHas, type EntryFixture } from "./bash-entry-helpers.ts";

let f: EntryFixture;
let sub: string;
beforeAll(async () => {
  f = await entryFixture();
  sub = join(f.proj, "a", "b");
  mkdirSync(sub, { recursive: true });
  writeFileSync(join(f.proj, "script.sh"), 'echo "script $0 [$1] [$2] $#"; echo "to stderr" >&2; read -r line; echo "read: $line"; exit 3\n');
});
afterAll(async () => {
  await f.cleanup();
});

// What each form prints: $0, positional params, $#, cwd, login/interactive flags, set -e / pipefail.
const PROBE = 'echo "0=$0 1=${1-} 2=${2-} #=$#"; pwd; shopt -q login_shell && echo login; case $- in *i*) echo interactive;; esac; case $- in *e*) echo errexit;; esac; set -o | grep -E "^pipefail +on" || true; echo err-line >&2; exit 7';

const forms: [string, string[], string?][] = [
  ["-c CMD", ["-c", PROBE]],
  ["-c CMD ARG0 ARG1 ARG2", ["-c", PROBE, "zero", "one", "two words"]],
  ["-lc", ["-lc", PROBE]],
  ["-c -l (Claude's order)", ["-c", "-l", PROBE, "a0", "a1"]],
  ["-l -c", ["-l", "-c", PROBE]],
  ["-i -c", ["-i", "-c", PROBE]],
  ["-l -i -c (Goose's probe)", ["-l", "-i", "-c", PROBE]],
  ["--login", ["--login", "-c", PROBE]],
  ["--noprofile --norc", ["--noprofile", "--norc", "-c", PROBE]],
  ["-e", ["-e", "-c", "false; echo not-reached"]],
  ["-o pipefail", ["-o", "pipefail", "-c", PROBE]],
  ["-- ends options", ["-c", PROBE, "--", "x"]],
  ["-s (script on stdin) ARGS", ["-s", "p1", "p2"], PROBE + "\n"],
  ["SCRIPT ARGS", ["script.sh", "x y", "z"], "piped line\n"],
  ["./SCRIPT", ["./script.sh"], "l\n"],
  ["stdin piped to -c", ["-c", "cat; echo done"], "data\n"],
];

/**
 * Login and interactive shells source /etc/profile(.d) and /etc/bash.bashrc, and the machine's
 * own profile scripts may complain differently in the world (e.g. pyenv's `cannot rehash:
 * /root/.pyenv/shims isn't writable`: /root is the world's own). Those lines are the world's
 * file view, not the entry's doing; they are dropped from both sides, and the pid in bash's
 * `cannot set terminal process group (N)` is the caller's terminal's, so it is masked.
 */
const PROFILE_NOISE = /^(pyenv|rbenv|nvm|direnv): .*$\n?/gm;
const norm = (r: { out: string; err: string; code: number | null }) => ({
  out: r.out,
  err: r.err.replace(PROFILE_NOISE, "").replace(/process group \(-?\d+\)/g, "process group (N)"),
  code: r.code,
});

describe("each invocation form, the entry vs plain bash", () => {
  for (const [name, args, stdin] of forms)
    test(name, () => {
      const o = { cwd: sub.startsWith(f.proj) && !args.some((a) => a.includes("script.sh")) ? sub : f.proj, ...(stdin !== undefined ? { stdin } : {}) };
      const plain = norm(run(["bash", ...args], { ...o, env: f.plainEnv() }));
      const entry = norm(run([f.shim, ...args], { ...o, env: f.env() }));
      expect(entry).toEqual(plain);
      // and `substrate` with the same arguments
      expect(norm(run([...hostArgv(), ...args], { ...o, env: f.env() }))).toEqual(plain);
    });

  test("it ran in the world (hostname substrate-*), plain bash did not; env and cwd come along", () => {
    const e = run([f.shim, "-c", 'hostname; echo "$FOO"; pwd'], { cwd: sub, env: f.env({ FOO: "bar baz" }) });
    expect(e.out).toMatch(new RegExp(`^substrate-[0-9a-f]{8}\\nbar baz\\n${sub}\\n$`));
    expect(run(["bash", "-c", "hostname"], { cwd: sub, env: f.plainEnv() }).out).not.toMatch(/^substrate-/);
  });

  test("a write outside the project is refused; inside it lands on the host", () => {
    const outside = `/opt/substrate-entry-${process.pid}`;
    const r = run([f.shim, "-c", `echo x > ${outside}; echo in > inside.txt`], { cwd: f.proj, env: f.env() });
    expect(r.err).toContain(outside);
    expect(existsSync(outside)).toBe(false);
    expect(readFileSync(join(f.proj, "inside.txt"), "utf8")).toBe("in\n");
  });

  test("stdin kinds: /dev/null, a file, a pipe", () => {
    expect(run([f.shim, "-c", "cat; echo end"], { cwd: f.proj, env: f.env(), stdin: "devnull" }).out).toBe("end\n");
    const file = join(f.proj, "in.txt");
    writeFileSync(file, "from a file\n");
    expect(run([f.shim, "-c", "cat"], { cwd: f.proj, env: f.env(), stdin: { file } }).out).toBe("from a file\n");
    expect(run([f.shim, "-c", "wc -l"], { cwd: f.proj, env: f.env(), stdin: "1\n2\n3\n" }).out.trim()).toBe("3");
  });

  test("exit status: exact, and 128+N when the command dies of a signal", () => {
    expect(run([f.shim, "-c", "exit 42"], { cwd: f.proj, env: f.env() }).code).toBe(42);
    expect(run([f.shim, "-c", "kill -TERM $$"], { cwd: f.proj, env: f.env() }).code).toBe(143);
    expect(run([f.shim, "-c", "kill -KILL $$"], { cwd: f.proj, env: f.env() }).code).toBe(137);
  });

  test("--version: bash's own, exit 0, nothing runs in the world", () => {
    const r = run([f.shim, "--version"], { cwd: f.proj, env: f.env({ SUBSTRATE_WORLD_SOCKET: "/nonexistent.sock" }) });
    expect(r.code).toBe(0);
    expect(r.out).toBe(run(["bash", "--version"], { cwd: f.proj, env: f.plainEnv() }).out);
  });

  test("bad options: bash's own message and exit 2, nothing runs", () => {
    for (const args of [["-Z"], ["-c"], ["--bogus", "-c", "echo ran"]]) {
      const e = run([f.shim, ...args], { cwd: f.proj, env: f.env() });
      const p = run(["bash", ...args], { cwd: f.proj, env: f.plainEnv() });
      expect(e.code).toBe(2);
      expect(e.code).toBe(p.code);
      expect(e.out).toBe("");
      expect(e.err.split("\n")[0]).toBe(p.err.split("\n")[0]);
    }
  });
});

describe("terminals, streaming, signals", () => {
  test("stdin and stdout a terminal → a PTY in the world with the window size; -i alone is interactive", async () => {
    let out = "";
    const p = Bun.spawn([f.shim, "-c", "tty; stty size; hostname; exit 5"], { cwd: f.proj, env: f.env({ TERM: "xterm" }), terminal: { cols: 91, rows: 33, data: (_t, d) => void (out += new TextDecoder().decode(d)) } });
    expect(await p.exited).toBe(5);
    expect(out).toMatch(/\/dev\/pts\/\d+/);
    expect(out).toContain("33 91");
    expect(out).toMatch(/substrate-[0-9a-f]{8}/);
    let iout = "";
    const i = Bun.spawn([f.shim, "-i"], { cwd: f.proj, env: f.env({ TERM: "xterm" }), terminal: { cols: 80, rows: 24, data: (_t, d) => void (iout += new TextDecoder().decode(d)) } });
    expect(await until(() => /[#$] $/.test(iout.trimEnd() + " "), 20_000)).toBe(true);
    i.terminal!.write("echo sum=$((40+2)); hostname\n");
    expect(await until(() => iout.includes("sum=42"), 20_000)).toBe(true);
    i.terminal!.write("exit 6\n");
    expect(await i.exited).toBe(6);
    expect(iout).toMatch(/substrate-[0-9a-f]{8}/);
  });

  test("stdout is streamed: the first line arrives while the command still runs; stderr apart", async () => {
    const p = Bun.spawn([f.shim, "-c", `echo first; echo e >&2; while [ ! -e ${f.proj}/go ]; do sleep 0.05; done; echo second`], { cwd: f.proj, env: f.env(), stdout: "pipe", stderr: "pipe", stdin: "ignore" });
    const reader = (p.stdout as ReadableStream<Uint8Array>).getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toBe("first\n");
    expect(p.exitCode).toBeNull(); // still running: it waits for the go file
    writeFileSync(join(f.proj, "go"), "");
    let rest = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    expect(rest).toBe("second\n");
    expect(await new Response(p.stderr as ReadableStream).text()).toBe("e\n");
    expect(await p.exited).toBe(0);
  });

  test("killing the entry's process group with SIGKILL kills the command's whole tree in the world", async () => {
    const marker = `entry-kill-KILL-${process.pid}`;
    const p = Bun.spawn([f.shim, "-c", `(exec -a ${marker} sleep 300) & (exec -a ${marker} sleep 300) & echo up; wait`], { cwd: f.proj, env: f.env(), stdout: "pipe", stderr: "pipe", stdin: "ignore", detached: true });
    const reader = (p.stdout as ReadableStream<Uint8Array>).getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe("up\n");
    expect(await until(() => worldHas(f, marker))).toBe(true);
    process.kill(-p.pid, "SIGKILL");
    await p.exited;
    expect(await until(() => !worldHas(f, marker))).toBe(true);
  });

  /** Survivors of a group signal: the entry's world tree vs plain bash's host tree (same script). */
  async function survivors(sig: NodeJS.Signals, viaEntry: boolean): Promise<{ count: number; code: number | null; out: string }> {
    const marker = `entry-${viaEntry ? "w" : "h"}-${sig}-${process.pid}`;
    const script = `trap 'echo trapped-${sig}; exit 9' ${sig.slice(3)}; (exec -a ${marker} sleep 300) & (exec -a ${marker} sleep 300) & echo up; wait; echo after-wait`;
    const argv = viaEntry ? [f.shim, "-c", script] : ["bash", "-c", script];
    const p = Bun.spawn(argv, { cwd: f.proj, env: viaEntry ? f.env() : f.plainEnv(), stdout: "pipe", stderr: "pipe", stdin: "ignore", detached: true });
    const reader = (p.stdout as ReadableStream<Uint8Array>).getReader();
    let out = new TextDecoder().decode((await reader.read()).value);
    const count = () =>
      viaEntry
        ? Number(run(["bash", "-c", `pgrep -fc '^${marker}' || true`], { cwd: f.proj, env: f.env() }).out.trim() || 0)
        : Number(Bun.spawnSync(["sh", "-c", `pgrep -fc '^${marker}' || true`]).stdout.toString().trim() || 0);
    expect(await until(() => count() === 2)).toBe(true);
    process.kill(-p.pid, sig);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out += new TextDecoder().decode(value);
    }
    const code = await p.exited;
    await Bun.sleep(300); // let the signalled group settle before counting (not a timing assertion)
    const left = count();
    // clean up what either side left (only the processes this test started: matched by its marker)
    if (viaEntry) run(["bash", "-c", `pkill -KILL -f '^${marker}' || true`], { cwd: f.proj, env: f.env() });
    else Bun.spawnSync(["sh", "-c", `pkill -KILL -f '^${marker}' || true`]);
    return { count: left, code, out };
  }

  for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"] as const)
    test(`${sig} to the entry's process group is forwarded: the command's trap runs, exit status and survivors as with plain bash`, async () => {
      const plain = await survivors(sig, false);
      const entry = await survivors(sig, true);
      expect(entry.out).toBe(plain.out);
      expect(entry.out).toContain(`trapped-${sig}`);
      expect(entry.code).toBe(plain.code!);
      expect(entry.count).toBe(plain.count);
    });
});

describe("inside a world", () => {
  test("SHELL = the entry, re-entered from the world (make, npm, git hooks): the real bash runs at once, in the same world", () => {
    // the world sees the project, so put a copy of the binary (and its bash link) there
    const bin = join(f.proj, ".bin");
    mkdirSync(bin, { recursive: true });
    const argv = hostArgv();
    if (argv.length === 1) {
      copyFileSync(argv[0]!, join(bin, "substrate"));
      Bun.spawnSync(["chmod", "755", join(bin, "substrate")]);
      symlinkSync(join(bin, "substrate"), join(bin, "bash"));
    } else return; // from source the world has no bun: nothing to re-enter
    const r = run([f.shim, "-c", '"$SHELL" -c \'echo "inner $0 $1"; hostname; echo "$SUBSTRATE_WORLD_ID"\' zero one; hostname; echo "$SUBSTRATE_WORLD_ID"'], { cwd: f.proj, env: f.env({ SHELL: join(bin, "bash") }) });
    expect(r.code).toBe(0);
    const [inner, h1, w1, h2, w2] = r.out.trim().split("\n");
    expect(inner).toBe("inner zero one");
    expect(h1).toMatch(/^substrate-/);
    expect(h1).toBe(h2!);
    expect(w1).toBe(w2!);
  });

  test("world disabled: the host runs it (policy first); the fallback's own `bash` and nested shells are the real bash (no re-entry loop)", () => {
    const r = run([f.shim, "-c", 'echo "0=$0 1=$1"; hostname; "$SHELL" -c "echo nested \$SUBSTRATE_WORLD"', "a0", "a1"], { cwd: f.proj, env: f.env({ SUBSTRATE_WORLD: "disabled", SHELL: f.shim }) });
    expect(r.code).toBe(0);
    const [first, host, nested] = r.out.trim().split("\n");
    expect(first).toBe("0=a0 1=a1");
    expect(host).not.toMatch(/^substrate-/);
    expect(nested).toBe("nested disabled");
  });

  test("the in-world marker cannot be faked on the host: SUBSTRATE_WORLD=enabled + an id still runs in the world", () => {
    const r = run([f.shim, "-c", "hostname"], { cwd: f.proj, env: f.env({ SUBSTRATE_WORLD: "enabled", SUBSTRATE_WORLD_ID: "wld_00000000-0000-7000-8000-000000000000" }) });
    expect(r.out).toMatch(/^substrate-[0-9a-f]{8}\n$/);
  });
});

describe("sh and zsh names", () => {
  test("the entry named sh runs sh in the world", () => {
    const args = ["-c", 'echo "0=$0 1=$1"; hostname', "a0", "a1"];
    const e = run([join(f.shimDir, "sh"), ...args], { cwd: f.proj, env: f.env() });
    expect(e.code).toBe(0);
    expect(e.out).toMatch(/^0=a0 1=a1\nsubstrate-[0-9a-f]{8}\n$/);
  });
  // (a link needs the compiled binary: from source the shims are `exec -a bash` scripts)
  test.skipIf((!existsSync("/usr/bin/zsh") && !existsSync("/bin/zsh")) || hostArgv().length !== 1)("the entry named zsh runs zsh in the world: same output as plain zsh", () => {
    const z = join(f.shimDir, "zsh");
    if (!existsSync(z)) symlinkSync(readlinkOr(f.shim), z);
    const args = ["-c", 'echo "$0 $1 ${ZSH_VERSION:+zsh}"; setopt | grep -c . >/dev/null; print -r -- "x"', "a0", "a1"];
    const plain = run(["zsh", ...args], { cwd: f.proj, env: f.plainEnv() });
    const e = run([z, ...args], { cwd: f.proj, env: f.env() });
    expect({ out: e.out, code: e.code }).toEqual({ out: plain.out, code: plain.code });
    expect(run([z, "-c", "hostname"], { cwd: f.proj, env: f.env() }).out).toMatch(/^substrate-/);
  });
});

function readlinkOr(p: string): string {
  try {
    return require("node:fs").readlinkSync(p) as string;
  } catch {
    return p;
  }
}

describe("policy and usage", () => {
  test("the policy decides on the unchanged argv: a denied command in any form is refused (126), nothing runs", () => {
    const pol = join(f.home, ".substrate", "policies");
    mkdirSync(pol, { recursive: true });
    writeFileSync(join(pol, "default.yaml"), DEFAULT_POLICY_YAML.replace(/^mode: observe.*$/m, "mode: enforce"));
    try {
      for (const args of [["-c", "sudo touch x"], ["-lc", "sudo touch x"], ["-c", "-l", "sudo touch x"], ["-l", "-i", "-c", "sudo touch x"]]) {
        const r = run([f.shim, ...args], { cwd: f.proj, env: f.env() });
        expect(r.code).toBe(126);
        expect(r.err).toContain("denied by policy");
      }
      expect(run([f.shim, "-c", "echo allowed"], { cwd: f.proj, env: f.env() }).out).toBe("allowed\n");
    } finally {
      Bun.spawnSync(["rm", "-f", join(pol, "default.yaml")]);
    }
  });

  test("substrate --help documents bash's forms (no --c=<CMD>)", () => {
    const r = run([...hostArgv(), "--help"], { cwd: f.proj, env: f.env() });
    expect(r.code).toBe(0);
    expect(r.out).toContain("-c COMMAND [ARG0 [ARG...]]");
    expect(r.out).toContain("-l, --login");
    expect(r.out).toContain("SCRIPT [ARG...]");
    expect(r.out).not.toContain("--c=<CMD>");
  });
});
