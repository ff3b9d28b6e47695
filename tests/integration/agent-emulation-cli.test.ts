/**
 * Issue 16, through the CLI as a user runs it: `substrate agent setup … --write/--undo`
 * (byte-identical), `substrate agent status`, and `substrate run -- PROGRAM` (its shells are
 * the bash entry: they run in the world).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostArgv, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

let agent: TestAgent;
let proj: string;
let home: string;
const env = () => ({ PATH: "/usr/local/bin:/usr/bin:/bin", HOME: home, SUBSTRATE_WORLD_SOCKET: agent.socket, SUBSTRATE_TRACE: join(home, "trace.jsonl") });
const substrate = (args: string[]) => {
  const p = Bun.spawnSync([...hostArgv(), ...args], { cwd: proj, env: env(), stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
};

beforeAll(async () => {
  agent = await startAgent();
  proj = tempProject();
  mkdirSync(join(proj, ".git"));
  home = mkdtempSync(join(tmpdir(), "substrate-home-"));
});
afterAll(async () => {
  await agent.stop();
  rmSync(proj, { recursive: true, force: true });
  rmSync(home, { recursive: true, force: true });
});

test("agent setup claude: print, --write (shims made), status routed, --undo byte-identical", () => {
  const settings = join(home, ".claude", "settings.json");
  mkdirSync(join(home, ".claude"));
  const original = '{"permissions":{"allow":["Bash(ls:*)"]},\n "model":"sonnet"}';
  writeFileSync(settings, original);
  const show = substrate(["agent", "setup", "claude"]);
  expect(show.code).toBe(0);
  expect(show.out).toContain("CLAUDE_CODE_SHELL");
  expect(readFileSync(settings, "utf8")).toBe(original); // printing changes nothing
  const w = substrate(["agent", "setup", "claude", "--write"]);
  expect(w.code).toBe(0);
  const shim = join(home, ".substrate", "shims", "bash");
  expect(JSON.parse(readFileSync(settings, "utf8")).env.CLAUDE_CODE_SHELL).toBe(shim);
  expect(lstatSync(shim).isSymbolicLink() || lstatSync(shim).isFile()).toBe(true);
  expect(substrate(["agent", "setup", "claude", "--write"]).out).toContain("already routed");
  const st = JSON.parse(substrate(["agent", "status", "--json"]).out);
  expect(st.agents.find((a: { agent: string }) => a.agent === "claude").routed).toBe(true);
  expect(st.shim_ok).toBe(true);
  expect(substrate(["agent", "setup", "claude", "--undo"]).code).toBe(0);
  expect(readFileSync(settings, "utf8")).toBe(original);
  expect(substrate(["agent", "setup", "nope"]).code).toBe(2);
});

test("agent setup gemini --write then --undo on a machine without ~/.gemini leaves no file", () => {
  expect(substrate(["agent", "setup", "gemini", "--write"]).code).toBe(0);
  expect(existsSync(join(home, ".gemini", "settings.json"))).toBe(true);
  expect(substrate(["agent", "setup", "gemini", "--undo"]).code).toBe(0);
  expect(existsSync(join(home, ".gemini", "settings.json"))).toBe(false);
});

test("substrate run -- PROGRAM: SHELL is the shim, the shim dir leads PATH, SUBSTRATE_AGENT_ID; its `bash -c` runs in the world", () => {
  const r = substrate(["run", "--agent-id", "emul", "--", "sh", "-c", 'echo "$SHELL|${PATH%%:*}|$SUBSTRATE_AGENT_ID"; bash -c "hostname; echo \\$SUBSTRATE_AGENT_ID"; exit 5']);
  expect(r.code).toBe(5);
  const [line, host, id] = r.out.trim().split("\n");
  const shims = join(home, ".substrate", "shims");
  expect(line).toBe(`${join(shims, "bash")}|${shims}|emul`);
  expect(host).toMatch(/^substrate-[0-9a-f]{8}$/);
  expect(id).toBe("emul");
  expect(substrate(["run"]).code).toBe(2);
  expect(substrate(["run", "--", "/nonexistent/prog"]).code).toBe(127);
});
