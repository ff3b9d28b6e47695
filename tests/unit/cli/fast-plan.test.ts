/**
 * src/cli/fast.ts fastPlan: which command lines the fast path takes (the rest go to the full
 * pipeline). Integration (the real binary and agent): tests/integration/fast-path.test.ts.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { isatty } from "node:tty";
import { fastPlan } from "../../../src/cli/fast.ts";

const uid = String(process.getuid?.() ?? 0);
const home = readFileSync("/etc/passwd", "utf8").split("\n").map((l) => l.split(":")).find((f) => f[2] === uid)?.[5] ?? "/root";
const env = { PATH: "/usr/bin:/bin", HOME: home, SUBSTRATE_WORLD_SOCKET: "/tmp/fast-plan-test.sock" };

test("only a plain `-c CMD [ARG0 ARG…]`", () => {
  for (const argv of [["-lc", "true"], ["-c"], ["-c", "-x"], ["-c", "+x"], ["--pty", "-c", "true"], ["--no-world", "-c", "true"], ["true"], []])
    expect(fastPlan(argv, "substrate", env)).toBeNull();
});

test("not with SUBSTRATE_WORLD (host runs, inside a world), SUBSTRATE_HOME, another HOME, or an agent side channel", () => {
  expect(fastPlan(["-c", "true"], "substrate", { ...env, SUBSTRATE_WORLD: "disabled" })).toBeNull();
  expect(fastPlan(["-c", "true"], "substrate", { ...env, SUBSTRATE_WORLD: "enabled" })).toBeNull();
  expect(fastPlan(["-c", "true"], "substrate", { ...env, SUBSTRATE_HOME: "/tmp/x" })).toBeNull();
  expect(fastPlan(["-c", "true"], "substrate", { ...env, HOME: "/tmp/not-the-passwd-home" })).toBeNull();
  expect(fastPlan(["-c", "true"], "substrate", { ...env, SUBSTRATE_TEST_LIMA_BACKEND: "1" })).toBeNull();
  expect(fastPlan(["-c", "cd /x && pwd -P >| /tmp/claude-1a2b-cwd"], "substrate", env)).toBeNull();
});

// stdin must be forwardable (a pipe, a file, /dev/null): a terminal is the pipeline's
test.skipIf(isatty(0))("taken: the world argv is bash's (the shim's own shell name), the socket is the config's", () => {
  const p = fastPlan(["-c", "echo $0", "a0"], "substrate", env);
  expect(p).not.toBeNull();
  expect(p!.argv.slice(1)).toEqual(["-c", "echo $0", "a0"]);
  expect(p!.argv[0]).toMatch(/(^|\/)bash$/);
  expect(p!.socket).toBe("/tmp/fast-plan-test.sock");
  expect(fastPlan(["-c", "true"], "/home/u/.substrate/shims/sh", env)!.argv[0]).toMatch(/(^|\/)sh$/);
});
