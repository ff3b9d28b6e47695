/** Round trips of the lifecycle/verify/health contract (src/contract/lifecycle.ts) and pure helpers. */
import { describe, expect, test } from "bun:test";
import type { z } from "zod";
import { HealthReport, LifecycleReport, VerifyReport, WorldStatusReport } from "../../src/contract/index.ts";
import { parseShow } from "../../src/sys/systemctl.ts";
import { renderDropin } from "../../src/lifecycle/systemd.ts";
import { parseFacts } from "../../src/verify/probe.ts";
import { renderVerify } from "../../src/verify/index.ts";
import { roundTrip } from "../helpers/contract.ts";


const lifecycle = {
  schema_version: 1,
  command: "warm",
  ok: true,
  backend: "linux-local",
  mode: "socket_activation",
  socket_path: "/run/substrate.sock",
  pid: 42,
  actions: ["installed_agent", "installed_units", "daemon_reload", "enabled_socket", "started_socket"],
  agent_version: "0.1.0+abc.def",
  expected_agent_version: "0.1.0+abc.def",
  guidance: ["log out and in"],
  duration_ms: 12,
};

const status = {
  schema_version: 1,
  backend: "linux-local",
  mode: "manual",
  running: true,
  agent: { version: "0.1.0+a.b", embedded_version: "0.1.0+a.b", version_match: true, pid: 7, uptime_ms: 1000 },
  socket: { path: "/run/substrate.sock", exists: true, owner: "root", group: "substrate", mode: "0660" },
  units: null,
  worlds: [{ id: "wld_1", project_dir: "/p", isolated: false, isolate_network: true, age_ms: 5, execs: 3 }],
  degraded: ["cgroups: hybrid layout; limits use the v1 controllers"],
};

const checks = [
  { id: "project_writable", status: "pass", detail: "ok", fix: null },
  { id: "cgroup_limits", status: "warn", detail: "degraded", fix: "use a system agent" },
];
const verify = {
  schema_version: 1,
  ok: true,
  backend: "linux-local",
  socket_path: "/run/substrate.sock",
  world_id: "wld_x",
  spec: { isolate_network: true, fs_mode: "writable", project_dir: "/tmp/p" },
  checks,
  duration_ms: 100,
};

describe("lifecycle contract", () => {
  test("LifecycleReport round-trips; error is optional; unknown actions and modes are refused", () => {
    roundTrip(LifecycleReport, lifecycle);
    roundTrip(LifecycleReport, { ...lifecycle, ok: false, actions: [], error: { message: "m", hint: "h" } });
    expect(LifecycleReport.safeParse({ ...lifecycle, actions: ["rebooted"] }).success).toBe(false);
    expect(LifecycleReport.safeParse({ ...lifecycle, mode: "docker" }).success).toBe(false);
    expect(LifecycleReport.safeParse({ ...lifecycle, extra: 1 }).success).toBe(false);
  });

  test("WorldStatusReport round-trips (running and not running)", () => {
    roundTrip(WorldStatusReport, status);
    roundTrip(WorldStatusReport, {
      ...status,
      mode: null,
      running: false,
      agent: { version: null, embedded_version: "x", version_match: null, pid: null, uptime_ms: null },
      socket: { path: "/x.sock", exists: false, owner: null, group: null, mode: null },
      worlds: [],
      degraded: [],
      error: { message: "no agent", hint: "substrate world warm" },
    });
    expect(WorldStatusReport.safeParse({ ...status, socket: { ...status.socket, mode: "660" } }).success).toBe(false);
  });

  test("VerifyReport: ok must equal 'no check failed'", () => {
    roundTrip(VerifyReport, verify);
    roundTrip(VerifyReport, { ...verify, ok: false, checks: [...checks, { id: "egress_refused", status: "fail", detail: "shared", fix: "x" }] });
    expect(VerifyReport.safeParse({ ...verify, checks: [...checks, { id: "landlock", status: "fail", detail: "d", fix: "f" }] }).success).toBe(false);
    expect(VerifyReport.safeParse({ ...verify, ok: false }).success).toBe(false);
  });

  test("HealthReport round-trips with a DS0 world doctor envelope", () => {
    const doctor = {
      schema_version: 1,
      platform: "linux",
      world_enabled: false,
      ok: false,
      host: {
        platform: "linux",
        ok: false,
        overlay_present: true,
        fuse: { dev: true, bin: true },
        cgroup_v2: true,
        nft_present: true,
        dmesg_restrict: "1",
        overlay_root: "/var/lib/substrate/overlay",
        copydiff_root: "/var/lib/substrate/copydiff",
        world_fs_mode: "writable",
        world_fs_isolation: "workspace",
        world_fs_require_world: false,
        world_socket: {
          mode: "manual",
          socket_path: "/run/substrate.sock",
          socket_exists: false,
          probe_ok: false,
          probe_error: "not probed",
          systemd_error: null,
          systemd_socket: null,
          systemd_service: null,
        },
      },
      world: { status: "disabled", ok: false, message: "world isolation disabled by --no-world" },
    };
    roundTrip(HealthReport, {
      schema_version: 1,
      ok: false,
      doctor,
      policy: { id: "default", file: "builtin:default", commit: "sha256:0123456789abcdef", valid: true, error: null },
      shims: { dir: "/h/.substrate/shims", installed: ["npm"], on_path: false },
      trace: { file: "/h/.substrate/trace.jsonl", size_bytes: 10, last_span: { span_id: "spn_x", ts: "2026-01-01T00:00:00.000Z", cmd: "ls" } },
      agent: { reachable: false, socket_path: "/run/substrate.sock", version: null, uptime_ms: null },
    });
  });
});

describe("pure helpers", () => {
  test("parseShow reads systemctl show output", () => {
    const p = parseShow("Id=substrate-world-agent.service\nLoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=static\nInvocationID=abc\nMainPID=123\nNRestarts=0\n");
    expect(p).toMatchObject({ Id: "substrate-world-agent.service", ActiveState: "active", InvocationID: "abc", MainPID: 123 });
  });

  test("the systemd drop-in lists sorted, de-duplicated, optional (-) writable roots", () => {
    expect(renderDropin(["/tmp", "/home", "/tmp"])).toContain("\n[Service]\nProtectHome=no\nReadWritePaths=-/home -/tmp\n");
  });

  test("probe facts parse as key<TAB>value; the verify text uses the doctor prefixes, a fix after each FAIL/WARN", () => {
    expect(parseFacts("a\tb c\nbad line\nk\t\n")).toEqual(new Map([["a", "b c"], ["k", ""]]));
    const text = renderVerify(VerifyReport.parse({ ...verify, ok: false, checks: [...checks, { id: "egress_refused", status: "fail", detail: "shared", fix: "turn it on" }] }), "policy p");
    const lines = text.trimEnd().split("\n");
    expect(lines[0]).toBe("== substrate world verify ==");
    for (const l of lines.slice(1)) expect(l).toMatch(/^(PASS|WARN|FAIL|INFO) {2}\| /);
    expect(text).toContain("FAIL  | non-allowlisted egress refused: shared\nINFO  | fix: turn it on");
    expect(text).toContain("WARN  | cgroup limits: degraded\nINFO  | fix: use a system agent");
  });
});
