/**
 * `substrate --require-approval -c CMD` on a terminal: the prompt carries a diff preview
 * obtained by a dry run of CMD in an isolated overlay world of a real agent, and the dry run
 * leaves the project untouched; deny → 126 and nothing ran; allow → the command runs for real.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostArgv, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

const PROMPT = "Choice [1-4, Enter = deny]: ";
let agent: TestAgent;
let proj: string;
let home: string;
let overlayBase: string;

beforeAll(async () => {
  overlayBase = mkdtempSync("/var/lib/substrate/test-preview-");
  agent = await startAgent({ env: { SUBSTRATE_OVERLAY_DIR: overlayBase } });
  proj = tempProject();
  home = mkdtempSync(join(tmpdir(), "substrate-preview-home-"));
});
afterAll(async () => {
  await agent.stop();
  expect(readdirSync(overlayBase)).toEqual([]);
  for (const d of [proj, home, overlayBase]) rmSync(d, { recursive: true, force: true });
});

async function onTerminal(args: string[], answer: string): Promise<{ code: number; out: string }> {
  let out = "";
  let answered = false;
  const proc = Bun.spawn([...hostArgv(), ...args], {
    cwd: proj,
    env: { PATH: process.env.PATH!, HOME: home, TERM: "dumb", SUBSTRATE_WORLD_SOCKET: agent.socket, SUBSTRATE_TRACE: join(home, "trace.jsonl") },
    terminal: {
      cols: 200,
      rows: 40,
      data(term, data) {
        out += Buffer.from(data).toString("utf8");
        if (!answered && out.includes(PROMPT)) {
          answered = true;
          term.write(`${answer}\r`);
        }
      },
    },
  });
  const timer = setTimeout(() => proc.kill(), 60_000);
  const code = await proc.exited;
  clearTimeout(timer);
  proc.terminal?.close();
  return { code, out: out.replace(/\r/g, "") };
}

test("the prompt previews the diff from an isolated dry run; deny runs nothing", async () => {
  const cmd = "mkdir -p node_modules/a node_modules/b && touch node_modules/a/x node_modules/b/y node_modules/c";
  const r = await onTerminal(["--require-approval", "-c", cmd], "");
  expect(r.out).toContain("writes");
  expect(r.out).toContain("node_modules");
  expect(r.code).toBe(126);
  expect(existsSync(join(proj, "node_modules"))).toBe(false);
  // The dry run's overlay result was discarded (what may remain is a pre-warmed spare's fresh
  // dir, agent/world/spares.ts: never a result; the agent's stop removes it, see afterAll).
  expect(readdirSync(overlayBase).filter((n) => existsSync(join(overlayBase, n, "result.json")))).toEqual([]);
});

test("allow once runs the command for real", async () => {
  const r = await onTerminal(["--require-approval", "-c", "touch approved.txt"], "1");
  expect(r.code).toBe(0);
  expect(existsSync(join(proj, "approved.txt"))).toBe(true);
});
