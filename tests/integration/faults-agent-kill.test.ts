/**
 * Issue 18 "faults that must lose nothing": the world agent SIGKILLed in the middle of a
 * command — an execute (`-c`), a stream (`--pty -c`) and an isolated run (`--isolated -c`).
 * Real processes, real kernel. For each:
 * - the client exits 3 with one clear line (+ at most one hint line), no stack trace, and
 *   never re-runs the command (elsewhere, or on the host);
 * - a restarted agent (same socket, state dir and overlay base) serves the next command;
 * - after the restart nothing of the killed agent's worlds is left: processes (spawner,
 *   egress helper, commands), mounts, cgroups, world/egress state dirs, overlay dirs;
 * - the isolated run's project is untouched.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { eventually, hostArgv, pidsMentioning, startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";

let base: string;
beforeAll(() => {
  base = mkdtempSync("/var/lib/substrate/test-faults-"); // the overlay base both agents share
});
afterAll(() => {
  rmSync(base, { recursive: true, force: true });
});

const alive = (pid: number): boolean => {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(" ")[2] !== "Z";
  } catch {
    return false;
  }
};

/** cgroup dirs named after a world (any hierarchy, a few levels down). */
function cgroupsNamed(id: string): string[] {
  const r = Bun.spawnSync(["find", "/sys/fs/cgroup", "-maxdepth", "8", "-type", "d", "-name", id], { stdout: "pipe", stderr: "ignore" });
  return r.stdout.toString().split("\n").filter(Boolean);
}

const mountsMentioning = (needles: string[]): string[] =>
  readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((l) => needles.some((n) => l.includes(n)));

interface Case {
  name: string;
  flags: string[];
  isolated: boolean;
}
const CASES: Case[] = [
  { name: "an execute (-c)", flags: ["-c"], isolated: false },
  { name: "a stream (--pty -c)", flags: ["--pty", "-c"], isolated: false },
  { name: "an isolated run (--isolated -c)", flags: ["--isolated", "-c"], isolated: true },
];

describe("the agent SIGKILLed in the middle of a command", () => {
  for (const c of CASES) {
    test(c.name, async () => {
      const overlay = mkdtempSync(join(base, "o-"));
      const env = { SUBSTRATE_OVERLAY_DIR: overlay };
      let agent: TestAgent | undefined = await startAgent({ env });
      let next: TestAgent | undefined;
      const proj = tempProject("substrate-faults-");
      writeFileSync(join(proj, "keep.txt"), "original\n");
      const cliEnv = { ...process.env, SUBSTRATE_WORLD_SOCKET: agent.socket, SUBSTRATE_HOME: join(proj, ".h"), SUBSTRATE_TRACE: join(proj, ".h", "trace.jsonl") };
      try {
        const cmd = "echo changed > keep.txt; touch new-file; echo started; sleep 60";
        const cli = Bun.spawn([...hostArgv(), ...c.flags, cmd], { cwd: proj, env: cliEnv, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
        let out = "";
        const reading = (async () => {
          for await (const b of cli.stdout as ReadableStream<Uint8Array>) out += new TextDecoder().decode(b);
        })();
        await eventually(async () => {
          if (!out.includes("started")) throw new Error(`not started yet (${JSON.stringify(out)})`);
        }, 30_000);
        const worlds = (await agent.client.listWorlds()).map((w) => w.id);
        expect(worlds.length).toBeGreaterThan(0);
        const worldPids = worlds.flatMap((w) => pidsMentioning(w));
        expect(worldPids.length).toBeGreaterThan(0);

        agent.proc.kill("SIGKILL");
        await agent.proc.exited;

        // the client: exit 3, one clear line (+ one hint), promptly (not after the sleep)
        const code = await cli.exited;
        await reading;
        const err = await new Response(cli.stderr as ReadableStream).text();
        expect(code).toBe(3);
        const lines = err.trim().split("\n");
        expect(lines.length).toBeLessThanOrEqual(2);
        expect(lines[0]).toMatch(/^substrate: the world agent .*(went away while the command ran|closed the stream before the command finished)/);
        if (lines[1]) expect(lines[1]).toStartWith("substrate: hint: ");
        expect(err).not.toContain("    at ");
        expect(err).not.toContain("running on the host"); // never a fallback re-run
        expect(out.split("started").length - 1).toBe(1); // ran once

        // every process of the killed agent's worlds dies with it
        await eventually(async () => {
          const left = worldPids.filter(alive);
          if (left.length) throw new Error(`still alive: ${left.join(" ")}`);
        }, 30_000);

        // the isolated run's project is untouched; the others ran in the project itself
        if (c.isolated) {
          expect(readFileSync(join(proj, "keep.txt"), "utf8")).toBe("original\n");
          expect(existsSync(join(proj, "new-file"))).toBe(false);
        } else expect(readFileSync(join(proj, "keep.txt"), "utf8")).toBe("changed\n");

        // the restart (what systemd does) sweeps what the crash left, and serves the next command
        next = await startAgent({ env, socket: agent.socket, stateDir: agent.stateDir });
        const ok = Bun.spawnSync([...hostArgv(), "-c", "echo next-ok"], { cwd: proj, env: cliEnv, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
        expect(ok.stdout.toString()).toBe("next-ok\n");
        expect(ok.exitCode).toBe(0);
        await eventually(async () => {
          const left = [
            ...worlds.flatMap((w) => pidsMentioning(w).filter(alive).map((p) => `process ${p}`)),
            ...mountsMentioning([...worlds, overlay]).map((m) => `mount ${m}`),
            ...worlds.flatMap((w) => cgroupsNamed(w).map((d) => `cgroup ${d}`)),
            ...worlds.filter((w) => existsSync(join(agent!.stateDir, "worlds", w))).map((w) => `world dir ${w}`),
            ...(existsSync(join(agent!.stateDir, "egress")) ? readdirSync(join(agent!.stateDir, "egress")).filter((e) => worlds.some((w) => e.includes(w))).map((e) => `egress dir ${e}`) : []),
            ...readdirSync(overlay).filter((d) => worlds.includes(d)).map((d) => `overlay dir ${d}`),
          ];
          if (left.length) throw new Error(`left behind: ${left.join("; ")}`);
        }, 30_000);
      } finally {
        await next?.stop();
        if (agent && agent.proc.exitCode === null) agent.proc.kill("SIGKILL");
        await agent?.stop().catch(() => {});
        agent = undefined;
        rmSync(proj, { recursive: true, force: true });
        rmSync(overlay, { recursive: true, force: true });
      }
    }, 120_000);
  }
});
