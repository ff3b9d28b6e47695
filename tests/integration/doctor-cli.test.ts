/**
 * `substrate host doctor` / `substrate world doctor` as real processes against a real world
 * agent (`bun agent/main.ts --listen <tmp socket>`): every DS0 exit code reached for real,
 * the JSON envelopes validated by the contract, and the side-effect-free promise checked
 * (no file created, no process left behind).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { HostDoctorEnvelopeV1, WorldDoctorEnvelopeV1, WorldDoctorReportV1 } from "../../src/contract/index.ts";

const ROOT = resolve(import.meta.dir, "../..");
const BUN = join(ROOT, "node_modules/.bin/bun");
const tmp = mkdtempSync(join(tmpdir(), "doctor-cli-"));
const home = join(tmp, "home");
const work = join(tmp, "work");
const tmpd = join(tmp, "tmp");
const sock = join(tmp, "agent.sock");
let agent: ReturnType<typeof Bun.spawn> | undefined;

async function cli(args: string[], env: Record<string, string> = {}) {
  const p = Bun.spawn([BUN, join(ROOT, "src/main.ts"), ...args], {
    cwd: work,
    env: { PATH: process.env.PATH!, HOME: home, TMPDIR: tmpd, SUBSTRATE_WORLD_SOCKET: sock, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

beforeAll(async () => {
  for (const d of [home, work, tmpd]) mkdirSync(d);
  agent = Bun.spawn([BUN, join(ROOT, "agent/main.ts"), "--listen", sock, "--state-dir", join(tmp, "state")], {
    stdout: "ignore",
    stderr: "pipe",
  });
  // Ready when /v1/capabilities answers (never assert on time: poll a bounded number of times).
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch("http://localhost/v1/capabilities", { unix: sock } as RequestInit);
      if (r.ok) return;
    } catch {}
    await Bun.sleep(50);
  }
  throw new Error(`agent did not come up: ${await new Response(agent.stderr as ReadableStream).text()}`);
});

afterAll(async () => {
  if (agent) {
    agent.kill("SIGTERM");
    await agent.exited;
  }
  rmSync(tmp, { recursive: true, force: true });
});

/**
 * Independent evidence of whether Landlock is active: the LSM list from securityfs, or else the
 * kernel config (built in + in CONFIG_LSM) and the boot command line (no lsm= override without it).
 */
function kernelSaysLandlock(): boolean {
  try {
    return readFileSync("/sys/kernel/security/lsm", "utf8").trim().split(",").includes("landlock");
  } catch {}
  const cfg = new TextDecoder().decode(Bun.gunzipSync(readFileSync("/proc/config.gz")));
  const cmdline = readFileSync("/proc/cmdline", "utf8");
  const lsmArg = /(?:^|\s)lsm=(\S+)/.exec(cmdline)?.[1];
  const lsms = lsmArg ?? /^CONFIG_LSM="([^"]*)"/m.exec(cfg)?.[1] ?? "";
  return /^CONFIG_SECURITY_LANDLOCK=y$/m.test(cfg) && lsms.split(",").includes("landlock");
}

describe("GET /v1/doctor/world on the real agent", () => {
  test("200 + WorldDoctorReportV1 read from this kernel", async () => {
    const r = await fetch("http://localhost/v1/doctor/world", { unix: sock } as RequestInit);
    expect(r.status).toBe(200);
    const report = WorldDoctorReportV1.parse(await r.json());
    expect(report.landlock.supported).toBe(kernelSaysLandlock());
    // Same kernel, same answer as the agent's capabilities (which the host probe also reads).
    const caps = (await (await fetch("http://localhost/v1/capabilities", { unix: sock } as RequestInit)).json()) as { features: { landlock: unknown } };
    expect(caps.features.landlock).toEqual({ supported: report.landlock.supported, abi: report.landlock.abi });
    expect(report.collected_at_utc).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(report.world_fs_strategy.probe).toEqual({ id: "enumeration_v1", probe_file: ".substrate_enum_probe", result: "pass", failure_reason: null });
  });
});

describe("exit codes", () => {
  test("healthy → 0 for both; world doctor ok only with both blocks ok", async () => {
    const w = await cli(["world", "doctor", "--json"]);
    expect(w.code, w.stderr).toBe(0);
    const env = WorldDoctorEnvelopeV1.parse(JSON.parse(w.stdout));
    expect(env.ok && env.host.ok && env.world.ok).toBe(true);
    expect(env.world.status).toBe("ok");
    expect(env.world.status === "ok" && env.world.landlock.supported).toBe(true);

    const h = await cli(["host", "doctor", "--json"]);
    expect(h.code, h.stderr).toBe(0);
    const henv = HostDoctorEnvelopeV1.parse(JSON.parse(h.stdout));
    expect(henv.host.platform === "linux" && henv.host.world_socket).toMatchObject({ socket_path: sock, socket_exists: true, probe_ok: true });
  });

  test("text output: headers, sections, prefixes, a fix after every WARN/FAIL", async () => {
    const w = await cli(["world", "doctor"]);
    expect(w.code).toBe(0);
    const lines = w.stdout.trimEnd().split("\n");
    expect(lines.slice(0, 2)).toEqual(["== substrate world doctor ==", "== Host =="]);
    expect(lines).toContain("== World ==");
    lines.forEach((l, i) => {
      if (l.startsWith("== ")) return;
      expect(l).toMatch(/^(PASS {2}\| |WARN {2}\| |FAIL {2}\| |INFO {2}\| )/);
      if (/^(WARN|FAIL)/.test(l)) expect(lines[i + 1]).toStartWith("INFO  | fix: ");
    });
    const h = await cli(["host", "doctor"]);
    expect(h.stdout.split("\n")[0]).toBe("== substrate host doctor ==");
  });

  test("agent down → world doctor 3 (unreachable), host doctor 4", async () => {
    const down = { SUBSTRATE_WORLD_SOCKET: join(tmp, "nobody.sock") };
    const w = await cli(["world", "doctor", "--json"], down);
    expect(w.code).toBe(3);
    expect(WorldDoctorEnvelopeV1.parse(JSON.parse(w.stdout)).world).toMatchObject({ status: "unreachable", ok: false });
    const h = await cli(["host", "doctor", "--json"], down);
    expect(h.code).toBe(4);
    expect(HostDoctorEnvelopeV1.parse(JSON.parse(h.stdout)).ok).toBe(false);
    const t = await cli(["world", "doctor"], down);
    expect(t.stdout).toContain("FAIL  | world agent: unreachable");
  });

  test("world disabled → 4 with world.status=disabled (env, root flag, subcommand flag, config)", async () => {
    for (const [args, env] of [
      [["world", "doctor", "--json"], { SUBSTRATE_WORLD: "disabled" }],
      [["--no-world", "world", "doctor", "--json"], {}],
      [["world", "doctor", "--json", "--no-world"], {}],
    ] as [string[], Record<string, string>][]) {
      const r = await cli(args, env);
      expect(r.code, args.join(" ")).toBe(4);
      const e = WorldDoctorEnvelopeV1.parse(JSON.parse(r.stdout));
      expect(e.world_enabled).toBe(false);
      expect(e.world).toMatchObject({ status: "disabled", ok: false });
    }
    const off = join(tmp, "offhome");
    mkdirSync(join(off, ".substrate"), { recursive: true });
    writeFileSync(join(off, ".substrate", "config.toml"), "[world]\nenabled = false\n");
    const c = await cli(["world", "doctor", "--json"], { HOME: off });
    expect(c.code).toBe(4);
    expect(WorldDoctorEnvelopeV1.parse(JSON.parse(c.stdout)).world).toMatchObject({ status: "disabled" });
    const h = await cli(["host", "doctor", "--json"], { SUBSTRATE_WORLD: "disabled" });
    expect(h.code).toBe(4);
    // --world overrides the env
    expect((await cli(["world", "doctor", "--world"], { SUBSTRATE_WORLD: "disabled" })).code).toBe(0);
  });

  test("bad flag or argument → 2, one line + usage, no stack trace", async () => {
    for (const args of [["world", "doctor", "--jsonn"], ["host", "doctor", "extra"]]) {
      const r = await cli(args);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("unknown argument");
      expect(r.stderr).not.toContain("    at ");
    }
  });

  test("invalid config file → 2 naming the file", async () => {
    const bad = join(tmp, "badhome");
    mkdirSync(join(bad, ".substrate"), { recursive: true });
    writeFileSync(join(bad, ".substrate", "config.toml"), "[world\n");
    const r = await cli(["world", "doctor"], { HOME: bad });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("config.toml");
  });
});

describe("no side effects", () => {
  const tree = (dir: string): string[] => {
    const out: string[] = [];
    const walk = (d: string) => {
      for (const n of readdirSync(d)) {
        const p = join(d, n);
        out.push(`${p} ${statSync(p).mtimeMs}`);
        if (statSync(p).isDirectory()) walk(p);
      }
    };
    walk(dir);
    return out.sort();
  };
  /** PIDs whose environment carries `marker` (children inherit it; so would a daemon). */
  const pidsWith = (marker: string): number[] =>
    readdirSync("/proc")
      .filter((n) => /^\d+$/.test(n))
      .filter((n) => {
        try {
          return readFileSync(`/proc/${n}/environ`, "latin1").includes(marker);
        } catch {
          return false;
        }
      })
      .map(Number);

  test("host doctor and world doctor create no file and leave no process", async () => {
    const before = [tree(home), tree(work), tree(tmpd)];
    const marker = `SUBSTRATE_DOCTOR_TEST_MARK=${Bun.randomUUIDv7()}`;
    const [k, v] = marker.split("=") as [string, string];
    for (const args of [["host", "doctor"], ["host", "doctor", "--json"], ["world", "doctor", "--json"], ["world", "doctor", "--no-world"]]) {
      const r = await cli(args, { [k]: v });
      expect([0, 4]).toContain(r.code);
    }
    expect(pidsWith(marker)).toEqual([]);
    expect([tree(home), tree(work), tree(tmpd)]).toEqual(before);
  });
});
