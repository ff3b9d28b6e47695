/**
 * Runs tests/smoke/linux-doctor.sh (DS0 "Smoke") inside the suite: against a real agent it must
 * pass (shapes valid, exit codes consistent, landlock.supported == true), and with no agent it
 * must fail — a smoke test that cannot fail proves nothing. Runs the compiled binaries from
 * dist/ when `make build-native` produced them (what `make test` does), and the sources always.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");
const BUN = join(ROOT, "node_modules/.bin/bun");
const SCRIPT = join(ROOT, "tests/smoke/linux-doctor.sh");
const arch = process.arch === "arm64" ? "arm64" : "x64";
const DIST_HOST = join(ROOT, `dist/substrate-linux-${arch}`);
const DIST_AGENT = join(ROOT, `dist/substrate-world-agent-linux-${arch}`);
const tmp = mkdtempSync(join(tmpdir(), "doctor-smoke-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function withAgent<T>(agentArgv: string[], sock: string, fn: () => Promise<T>): Promise<T> {
  const agent = Bun.spawn([...agentArgv, "--listen", sock, "--state-dir", `${sock}.state`], { stdout: "ignore", stderr: "ignore" });
  try {
    for (let i = 0; i < 200; i++) {
      try {
        if ((await fetch("http://localhost/v1/capabilities", { unix: sock } as RequestInit)).ok) break;
      } catch {}
      await Bun.sleep(50);
    }
    return await fn();
  } finally {
    agent.kill("SIGTERM");
    await agent.exited;
  }
}

async function smoke(substrate: string, sock: string) {
  const p = Bun.spawn(["bash", SCRIPT], {
    env: { ...process.env, SUBSTRATE: substrate, SUBSTRATE_WORLD_SOCKET: sock, BUN },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { out: out + err, code };
}

describe("tests/smoke/linux-doctor.sh", () => {
  test("passes against the agent from source", async () => {
    const sock = join(tmp, "src.sock");
    const r = await withAgent([BUN, join(ROOT, "agent/main.ts")], sock, () => smoke(`${BUN} ${join(ROOT, "src/main.ts")}`, sock));
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain("PASS  | world.landlock.supported == true");
  });

  test.skipIf(!existsSync(DIST_HOST) || !existsSync(DIST_AGENT))("passes with the compiled binaries (dist/)", async () => {
    const sock = join(tmp, "dist.sock");
    const r = await withAgent([DIST_AGENT], sock, () => smoke(DIST_HOST, sock));
    expect(r.code, r.out).toBe(0);
  });

  test("fails when no agent answers", async () => {
    const r = await smoke(`${BUN} ${join(ROOT, "src/main.ts")}`, join(tmp, "nobody.sock"));
    expect(r.code).toBe(1);
    expect(r.out).toContain("FAIL  | world.landlock.supported == true");
  });
});
