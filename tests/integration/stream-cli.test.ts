/**
 * The CLI on top of /v1/stream, from source, against a real agent:
 * - `substrate -c` streams piped stdin (and does not hang on an open-but-silent stdin)
 * - `substrate --pty -c` runs on a PTY in the world and propagates the exit code
 * - `substrate shell`: the user's bash in the world; `cd`/`export` logged as
 *   `builtin_command` spans (OSC markers never reach the user's screen); --no-world → host
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { spansIn, startSourceAgent, worldDirs, type ApiAgent } from "./api-helpers.ts";

const ROOT = resolve(import.meta.dir, "../..");
const SUBSTRATE = [process.execPath, join(ROOT, "src/main.ts")];

let agent: ApiAgent;
let dir: string;
let proj: string;
let env: Record<string, string>;
let trace: string;

beforeAll(async () => {
  agent = await startSourceAgent();
  dir = mkdtempSync(join(tmpdir(), "substrate-stream-cli-"));
  proj = join(dir, "proj");
  mkdirSync(proj);
  mkdirSync(join(dir, "home"));
  trace = join(dir, "trace.jsonl");
  env = {
    PATH: "/usr/local/bin:/usr/bin:/bin",
    HOME: join(dir, "home"),
    LANG: "C.UTF-8",
    SUBSTRATE_TRACE: trace,
    SUBSTRATE_WORLD_SOCKET: agent.socket,
    SHELL: "/bin/bash",
  };
});
afterAll(async () => {
  const state = agent.stateDir;
  await agent.stop();
  expect(worldDirs(state)).toEqual([]);
  rmSync(dir, { recursive: true, force: true });
});

async function run(args: string[], stdin?: string | Uint8Array | "open"): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn([...SUBSTRATE, ...args], { cwd: proj, env, stdin: stdin === undefined ? "ignore" : "pipe", stdout: "pipe", stderr: "pipe" });
  if (stdin !== undefined && stdin !== "open") {
    const sink = p.stdin as import("bun").FileSink;
    sink.write(stdin);
    await sink.end();
  }
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (stdin === "open") await (p.stdin as import("bun").FileSink).end(); // only after it exited
  return { code, out, err };
}

test("echo hi | substrate -c cat — piped stdin is streamed into the world", async () => {
  const r = await run(["-c", "cat; echo world=$SUBSTRATE_WORLD"], "hi\n");
  expect(r.err).toBe("");
  expect(r.out).toBe("hi\nworld=enabled\n");
  expect(r.code).toBe(0);
});

test("substrate -c true with an open but silent stdin pipe does not hang", async () => {
  const r = await run(["-c", "exit 6"], "open");
  expect(r.code).toBe(6);
});

test("5 MiB of binary stdin arrives intact (sha256 on both sides)", async () => {
  const blob = new Uint8Array(5 * 1024 * 1024);
  for (let i = 0; i < blob.length; i++) blob[i] = (i * 31 + (i >> 9)) & 0xff;
  const want = new Bun.CryptoHasher("sha256").update(blob).digest("hex");
  const r = await run(["-c", "sha256sum | cut -c1-64"], blob);
  expect(r.out.trim()).toBe(want);
});

test("substrate --pty -c: runs on a PTY in the world, exit code propagated", async () => {
  const r = await run(["--pty", "-c", "printf 'hi\\n'; tty; exit 7"]);
  expect(r.code).toBe(7);
  expect(r.out).toContain("hi\r\n"); // the PTY's onlcr: a real terminal
  expect(r.out).toMatch(/\/dev\/pts\/\d+/);
});

test("substrate shell: bash in the world, cd/export logged as builtin_command spans, markers hidden", async () => {
  const script = "cd /tmp\nexport FOO=bar\necho \"in=$PWD:$FOO:$SUBSTRATE_WORLD\"\nexit 3\n";
  const r = await run(["shell"], script);
  expect(r.out).toContain("in=/tmp:bar:enabled");
  expect(r.out).not.toContain("\x1b]6973");
  expect(r.code).toBe(3);
  const builtins = (await spansIn(trace)).filter((s) => s.event_type === "builtin_command");
  expect(builtins.map((s) => s.cmd)).toEqual(["cd /tmp", "export FOO=bar"]);
  expect(builtins[0]).toMatchObject({ component: "shell", agent_id: "human", cwd: "/tmp" });
});

test("substrate --no-world shell: the same shell on the host", async () => {
  const r = await run(["--no-world", "shell"], "echo host-$SUBSTRATE_WORLD\nexit 4\n");
  expect(r.out).toContain("host-disabled");
  expect(r.code).toBe(4);
});

test("--pty -c on a real terminal (script(1)): the terminal's size, raw mode, Ctrl-C reaches the world's job", async () => {
  const inner = `stty cols 91 rows 33; ${SUBSTRATE.join(" ")} --pty -c 'stty size; trap "echo got-INT; exit 9" INT; printf ready; sleep 60 & wait'; echo "rc=$?"; stty -a | grep -o -- "-icanon\\| icanon" | head -1`;
  const p = Bun.spawn(["script", "-qfec", inner, "/dev/null"], { cwd: proj, env, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  const reader = (p.stdout as ReadableStream<Uint8Array>).getReader();
  let out = "";
  const until = async (s: string) => {
    while (!out.includes(s)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`ended before ${s}: ${JSON.stringify(out)}`);
      out += new TextDecoder().decode(value);
    }
  };
  await until("ready");
  expect(out).toContain("33 91"); // the host terminal's size reached the world's PTY
  (p.stdin as import("bun").FileSink).write("\x03"); // a raw byte: the world's PTY makes it SIGINT
  (p.stdin as import("bun").FileSink).flush();
  await until("rc=");
  await until("icanon");
  expect(out).toContain("got-INT");
  expect(out).toContain("rc=9");
  expect(out).toMatch(/ icanon/); // cooked mode restored after the session
  await (p.stdin as import("bun").FileSink).end();
  await p.exited;
});

test("substrate shell on a real terminal: Ctrl-Z stops the foreground job, Ctrl-C interrupts, job control works", async () => {
  const p = Bun.spawn(["script", "-qfec", `${SUBSTRATE.join(" ")} shell; echo "rc=$?"`, "/dev/null"], { cwd: proj, env, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  const sink = p.stdin as import("bun").FileSink;
  const reader = (p.stdout as ReadableStream<Uint8Array>).getReader();
  let out = "";
  const until = async (s: string | RegExp) => {
    while (!(typeof s === "string" ? out.includes(s) : s.test(out))) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`ended before ${s}: ${JSON.stringify(out)}`);
      out += new TextDecoder().decode(value);
    }
  };
  const type = (s: string) => {
    sink.write(s);
    sink.flush();
  };
  type("echo READY-$((6*7))\r");
  await until("READY-42");
  type("sleep 300\r");
  await Bun.sleep(300);
  type("\x1a"); // Ctrl-Z
  await until(/Stopped\s+sleep 300/);
  type("jobs -s | wc -l | sed 's/^/stopped-jobs=/'\r");
  await until("stopped-jobs=1");
  type("kill -9 %1; sleep 30\r");
  await Bun.sleep(300);
  type("\x03"); // Ctrl-C interrupts the foreground sleep, the shell survives
  type("echo after-$((1+1))\r");
  await until("after-2");
  type("exit 5\r");
  await until("rc=5");
  await sink.end();
  await p.exited;
}, 60_000);
