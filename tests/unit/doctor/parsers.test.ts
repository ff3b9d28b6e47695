/** Parsers of tool output, the config resolver, the text renderer and the route's error path. */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CliError } from "../../../src/cli/_errors.ts";
import { buildRouter } from "../../../src/api/router.ts";
import type { AgentService } from "../../../src/api/service.ts";
import { ErrorBody } from "../../../src/contract/index.ts";
import { resolveWorldSettings } from "../../../src/doctor/config.ts";
import { cgroupLayout, parseSystemctlShow } from "../../../src/doctor/linux.ts";
import { parseLimaListStatus, splitCurlStatus } from "../../../src/doctor/macos.ts";
import { fail, info, pass, renderLines, warn } from "../../../src/doctor/render.ts";
import { unknownArg } from "../../../src/doctor/cli.ts";
import { MOUNTINFO_HYBRID, MOUNTINFO_V1 } from "./_fake.ts";

describe("cgroupLayout", () => {
  test("unified, hybrid, v1-only", () => {
    expect(cgroupLayout("25 1 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")).toEqual({ kind: "unified", v2Mount: "/sys/fs/cgroup" });
    expect(cgroupLayout(MOUNTINFO_HYBRID)).toEqual({ kind: "hybrid", v2Mount: "/sys/fs/cgroup/unified" });
    expect(cgroupLayout(MOUNTINFO_V1)).toEqual({ kind: "v1", v2Mount: null });
    expect(cgroupLayout("")).toEqual({ kind: "none", v2Mount: null });
  });
  test("optional mountinfo fields before the separator do not confuse it", () => {
    const line = "25 1 0:23 / /sys/fs/cgroup rw,nosuid shared:9 master:1 - cgroup2 cgroup2 rw\n";
    expect(cgroupLayout(line).kind).toBe("unified");
  });
});

describe("parseSystemctlShow", () => {
  test("two units, not-found dropped, multiple Listen lines kept", () => {
    const out =
      "Id=substrate-world-agent.socket\nLoadState=loaded\nActiveState=active\nSubState=listening\nUnitFileState=enabled\nListen=/run/substrate.sock (Stream)\nListen=/run/x.sock (Stream)\n\n" +
      "Id=substrate-world-agent.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nUnitFileState=\n";
    expect(parseSystemctlShow(out)).toEqual([
      {
        name: "substrate-world-agent.socket",
        active_state: "active",
        sub_state: "listening",
        unit_file_state: "enabled",
        listens: ["/run/substrate.sock (Stream)", "/run/x.sock (Stream)"],
      },
    ]);
  });
});

describe("limactl list --json (one object per line)", () => {
  test("finds the named instance among several lines", () => {
    const out = `${JSON.stringify({ name: "default", status: "Stopped" })}\n${JSON.stringify({ name: "substrate", status: "Running" })}\n`;
    expect(parseLimaListStatus(out)).toBe("Running");
    expect(parseLimaListStatus("")).toBe("NotFound");
    expect(parseLimaListStatus("[{")).toBe("Unknown");
  });
  test("curl status split", () => {
    expect(splitCurlStatus('{"a":1}\n200')).toEqual({ status: 200, body: '{"a":1}' });
    expect(splitCurlStatus("")).toEqual({ status: null, body: "" });
  });
});

describe("resolveWorldSettings (through src/config.ts)", () => {
  const home = mkdtempSync(join(tmpdir(), "doctor-cfg-"));
  afterAll(() => rmSync(home, { recursive: true, force: true }));
  const withConfig = (toml: string | null) => {
    rmSync(join(home, ".substrate"), { recursive: true, force: true });
    if (toml !== null) {
      mkdirSync(join(home, ".substrate"));
      writeFileSync(join(home, ".substrate", "config.toml"), toml);
    }
  };
  const resolve = (env: Record<string, string>, flags: { world?: boolean } = {}) => resolveWorldSettings({ env, home }, flags);

  test("precedence: default < config < env < flags", () => {
    withConfig(null);
    expect(resolve({})).toMatchObject({ world_enabled: true, enabled_source: "default", socket_path: "/run/substrate.sock" });
    withConfig('[world]\nenabled = false\nfs_mode = "read_only"\nfs_isolation = "full"\nrequire_world = true\nsocket = "/tmp/s.sock"\n');
    expect(resolve({})).toEqual({
      world_enabled: false,
      enabled_source: `${join(home, ".substrate", "config.toml")} (world.enabled)`,
      fs_mode: "read_only",
      fs_isolation: "full",
      require_world: true,
      socket_path: "/tmp/s.sock",
    });
    expect(resolve({ SUBSTRATE_WORLD: "enabled" }).world_enabled).toBe(true);
    expect(resolve({ SUBSTRATE_WORLD_SOCKET: "/tmp/e.sock" }).socket_path).toBe("/tmp/e.sock");
    withConfig(null);
    expect(resolve({ SUBSTRATE_WORLD: "disabled" }).enabled_source).toBe("SUBSTRATE_WORLD=disabled");
    expect(resolve({ SUBSTRATE_WORLD: "disabled" }, { world: true }).world_enabled).toBe(true);
    expect(resolve({}, { world: false })).toMatchObject({ world_enabled: false, enabled_source: "--no-world" });
  });
  test("a bad config file is a usage error (exit 2) with a hint", () => {
    withConfig("[world\n");
    expect(() => resolve({})).toThrow(CliError);
    try {
      resolve({});
    } catch (e) {
      expect((e as CliError).exitCode).toBe(2);
    }
    withConfig('[world]\nfs_mode = "rw"\n');
    expect(() => resolve({})).toThrow(/fs_mode/);
  });
});

describe("renderLines", () => {
  test("exact prefixes; a fix line follows every WARN and FAIL", () => {
    expect(renderLines([pass("a"), info("b"), warn("c", "do c"), fail("d", "do d")])).toEqual([
      "PASS  | a",
      "INFO  | b",
      "WARN  | c",
      "INFO  | fix: do c",
      "FAIL  | d",
      "INFO  | fix: do d",
    ]);
  });
});

describe("flag validation", () => {
  test("known flags pass; anything else is reported", () => {
    expect(unknownArg(["--json", "--no-world"])).toBeNull();
    expect(unknownArg(["--jsn"])).toBe("--jsn");
    expect(unknownArg(["extra"])).toBe("extra");
  });
});

describe("GET /v1/doctor/world route", () => {
  const base = {
    capabilities: async () => {
      throw new Error("unused");
    },
    execute: async () => {
      throw new Error("unused");
    },
    listWorlds: async () => [],
    deleteWorld: async () => false,
  } as unknown as AgentService;

  test("an internal error becomes HTTP 500 with the JSON error body, never ok=true", async () => {
    const app = buildRouter({
      ...base,
      worldDoctor: async () => {
        throw new Error("mkdtemp /var/lib/substrate/overlay: EROFS");
      },
    });
    const res = await app.request("/v1/doctor/world");
    expect(res.status).toBe(500);
    const body = await res.json();
    expect(ErrorBody.parse(body).error.code).toBe("internal");
    expect(JSON.stringify(body)).not.toContain('"ok"');
  });

  test("a service without worldDoctor answers 501 unsupported", async () => {
    const res = await buildRouter(base).request("/v1/doctor/world");
    expect(res.status).toBe(501);
    expect(ErrorBody.parse(await res.json()).error.code).toBe("unsupported");
  });
});

describe("runDoctorCli", () => {
  test("an unexpected error → exit 1, one line + hint, no stack trace", async () => {
    const { runDoctorCli } = await import("../../../src/doctor/cli.ts");
    const { fakeSystem, linuxHealthy } = await import("./_fake.ts");
    const sys = fakeSystem(linuxHealthy({ env: { HOME: "/nonexistent-home" } }));
    sys.readText = () => {
      throw new Error("EIO: i/o error, read");
    };
    let out = "";
    let err = "";
    const code = await runDoctorCli("host", [], {}, { sys, out: (s) => (out += s), err: (s) => (err += s) });
    expect(code).toBe(1);
    expect(out).toBe("");
    expect(err).toContain("substrate host doctor: internal error: EIO: i/o error, read");
    expect(err).not.toContain("    at ");
  });
});
