/** DS0 schemas: round trips of the spec's own examples, and every `ok` rule rejecting a liar. */
import { describe, expect, test } from "bun:test";
import { z } from "zod";
import {
  HostDoctorEnvelopeV1,
  HostDoctorReportV1,
  utcSeconds,
  WorldDoctorEnvelopeV1,
  WorldDoctorReportV1,
} from "../../../src/contract/index.ts";
import { WORLD_REPORT_OK } from "./_fake.ts";

const clone = <T>(x: T): T => structuredClone(x);
const roundTrip = <S extends z.ZodType>(s: S, v: unknown) => {
  const parsed = s.parse(v);
  expect(s.parse(JSON.parse(JSON.stringify(parsed)))).toEqual(parsed);
  expect(parsed).toEqual(v as z.infer<S>);
};

const LINUX_HOST = {
  platform: "linux",
  ok: true,
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
    mode: "socket_activation",
    socket_path: "/run/substrate.sock",
    socket_exists: true,
    probe_ok: true,
    probe_error: null,
    systemd_error: null,
    systemd_socket: {
      name: "substrate-world-agent.socket",
      active_state: "active",
      sub_state: "listening",
      unit_file_state: "enabled",
      listens: ["/run/substrate.sock (Stream)"],
    },
    systemd_service: null,
  },
};
const MAC_HOST = {
  platform: "macos",
  ok: true,
  world_fs_mode: "writable",
  world_fs_isolation: "workspace",
  world_fs_require_world: false,
  lima: { installed: true, virtualization: true, vm_status: "Running", service_active: true, agent_caps_ok: true, vsock_proxy: false },
};
const WIN_HOST = { platform: "windows", ok: false, status: "unsupported", message: "not supported" };

const hostEnv = (host: object, world_enabled = true) => ({
  schema_version: 1,
  platform: (host as { platform: string }).platform,
  world_enabled,
  ok: (host as { ok: boolean }).ok,
  host,
});

describe("WorldDoctorReportV1", () => {
  test("the spec's example round-trips", () => roundTrip(WorldDoctorReportV1, WORLD_REPORT_OK));

  test("unsupported landlock: abi null + reason, ok=false", () => {
    const r = clone(WORLD_REPORT_OK) as any;
    r.landlock = { supported: false, abi: null, reason: "disabled at boot" };
    r.ok = false;
    roundTrip(WorldDoctorReportV1, r);
  });

  const rejects = (mut: (r: any) => void, path: string) => {
    const r = clone(WORLD_REPORT_OK) as any;
    mut(r);
    const res = WorldDoctorReportV1.safeParse(r);
    expect(res.success).toBe(false);
    expect(res.error!.issues.map((i) => i.path.join("."))).toContain(path);
  };
  test("ok=true with landlock unsupported is rejected", () =>
    rejects((r) => (r.landlock = { supported: false, abi: null, reason: "x" }), "ok"));
  test("ok=true with a failed probe is rejected", () =>
    rejects((r) => (r.world_fs_strategy.probe = { ...r.world_fs_strategy.probe, result: "fail", failure_reason: "x" }), "ok"));
  test("ok=false when everything passes is rejected", () => rejects((r) => (r.ok = false), "ok"));
  test("supported landlock needs an abi", () => rejects((r) => (r.landlock.abi = null), "landlock.abi"));
  test("supported landlock has no reason", () => rejects((r) => (r.landlock.reason = "x"), "landlock.reason"));
  test("unsupported landlock needs a reason", () =>
    rejects((r) => ((r.landlock = { supported: false, abi: null, reason: null }), (r.ok = false)), "landlock.reason"));
  test("failure_reason is null when the probe passes", () =>
    rejects((r) => (r.world_fs_strategy.probe.failure_reason = "x"), "world_fs_strategy.probe.failure_reason"));
  test("enum values are exact", () => {
    rejects((r) => (r.world_fs_strategy.primary = "fuse"), "world_fs_strategy.primary");
    rejects((r) => (r.world_fs_strategy.fallback = "copy"), "world_fs_strategy.fallback");
    rejects((r) => (r.world_fs_strategy.probe.id = "enumeration_v2"), "world_fs_strategy.probe.id");
    rejects((r) => (r.world_fs_strategy.probe.probe_file = ".probe"), "world_fs_strategy.probe.probe_file");
    rejects((r) => (r.world_fs_strategy.probe.result = "skipped"), "world_fs_strategy.probe.result");
    rejects((r) => (r.schema_version = 2), "schema_version");
  });
  test("collected_at_utc is RFC3339 UTC seconds with Z", () => {
    rejects((r) => (r.collected_at_utc = "2026-01-08T00:00:00.123Z"), "collected_at_utc");
    rejects((r) => (r.collected_at_utc = "2026-01-08T00:00:00+00:00"), "collected_at_utc");
    rejects((r) => (r.collected_at_utc = "2026-13-45T00:00:00Z"), "collected_at_utc");
    expect(utcSeconds(new Date("2026-01-08T00:00:00.999Z"))).toBe("2026-01-08T00:00:00Z");
  });
  test("unknown fields are rejected", () => rejects((r) => (r.extra = 1), ""));
});

describe("HostDoctorEnvelopeV1", () => {
  test("linux, macos and windows envelopes round-trip", () => {
    roundTrip(HostDoctorEnvelopeV1, hostEnv(LINUX_HOST));
    roundTrip(HostDoctorEnvelopeV1, hostEnv(MAC_HOST));
    roundTrip(HostDoctorEnvelopeV1, hostEnv(WIN_HOST));
    roundTrip(HostDoctorReportV1, LINUX_HOST);
  });

  const rejectsHost = (base: object, mut: (h: any) => void, world_enabled = true) => {
    const h = clone(base) as any;
    mut(h);
    expect(HostDoctorEnvelopeV1.safeParse(hostEnv(h, world_enabled)).success).toBe(false);
  };
  test("each linux prerequisite is required for ok=true", () => {
    rejectsHost(LINUX_HOST, (h) => (h.nft_present = false));
    rejectsHost(LINUX_HOST, (h) => (h.cgroup_v2 = false));
    rejectsHost(LINUX_HOST, (h) => ((h.world_socket.socket_exists = false), (h.world_socket.probe_ok = false), (h.world_socket.probe_error = "gone")));
    rejectsHost(LINUX_HOST, (h) => ((h.world_socket.probe_ok = false), (h.world_socket.probe_error = "refused")));
    rejectsHost(LINUX_HOST, (h) => ((h.overlay_present = false), (h.fuse.bin = false)));
    rejectsHost(LINUX_HOST, () => {}, false); // world disabled
  });
  test("overlay OR fuse dev+bin is enough", () => {
    const h = clone(LINUX_HOST) as any;
    h.overlay_present = false;
    expect(HostDoctorEnvelopeV1.safeParse(hostEnv(h)).success).toBe(true);
  });
  test("ok=false while every prerequisite holds is rejected (iff)", () => rejectsHost(LINUX_HOST, (h) => (h.ok = false)));
  test("each macos prerequisite is required for ok=true", () => {
    for (const k of ["installed", "virtualization", "service_active", "agent_caps_ok"]) rejectsHost(MAC_HOST, (h) => (h.lima[k] = false));
    rejectsHost(MAC_HOST, (h) => (h.lima.vm_status = "Stopped"));
    rejectsHost(MAC_HOST, () => {}, false);
    // vsock_proxy is informational
    const h = clone(MAC_HOST) as any;
    h.lima.vsock_proxy = true;
    expect(HostDoctorEnvelopeV1.safeParse(hostEnv(h)).success).toBe(true);
  });
  test("windows is never ok and always explains itself", () => {
    rejectsHost(WIN_HOST, (h) => (h.ok = true));
    rejectsHost(WIN_HOST, (h) => (h.message = ""));
    rejectsHost(WIN_HOST, (h) => (h.status = "ok"));
  });
  test("envelope ok equals host.ok; platform equals host.platform", () => {
    expect(HostDoctorEnvelopeV1.safeParse({ ...hostEnv(LINUX_HOST), ok: false }).success).toBe(false);
    expect(HostDoctorEnvelopeV1.safeParse({ ...hostEnv(LINUX_HOST), platform: "macos" }).success).toBe(false);
  });
  test("probe_error is set exactly when the probe failed", () => {
    rejectsHost(LINUX_HOST, (h) => (h.world_socket.probe_error = "x"));
    rejectsHost(LINUX_HOST, (h) => ((h.ok = false), (h.world_socket.probe_ok = false)));
  });
});

describe("WorldDoctorEnvelopeV1", () => {
  const env = (host: object, world: object, world_enabled = true) => {
    const h = host as { platform: string; ok: boolean };
    const w = world as { ok: boolean };
    return { schema_version: 1, platform: h.platform, world_enabled, ok: h.ok && w.ok, host, world };
  };
  const okWorld = { ...WORLD_REPORT_OK, status: "ok" };
  test("ok, missing_prereqs, unreachable and disabled blocks round-trip", () => {
    roundTrip(WorldDoctorEnvelopeV1, env(MAC_HOST, okWorld));
    const bad = { ...clone(WORLD_REPORT_OK), ok: false, status: "missing_prereqs", landlock: { supported: false, abi: null, reason: "off" } };
    roundTrip(WorldDoctorEnvelopeV1, env(LINUX_HOST, bad));
    roundTrip(WorldDoctorEnvelopeV1, env(LINUX_HOST, { status: "unreachable", ok: false, message: "ECONNREFUSED" }));
    const disabledHost = { ...clone(LINUX_HOST), ok: false };
    roundTrip(WorldDoctorEnvelopeV1, env(disabledHost, { status: "disabled", ok: false, message: "--no-world" }, false));
  });
  test("never ok=true unless host.ok and world.ok", () => {
    const notOkHost = { ...clone(LINUX_HOST), ok: false, nft_present: false };
    expect(WorldDoctorEnvelopeV1.safeParse({ ...env(notOkHost, okWorld), ok: true }).success).toBe(false);
    const bad = { ...clone(WORLD_REPORT_OK), ok: false, status: "missing_prereqs", landlock: { supported: false, abi: null, reason: "off" } };
    expect(WorldDoctorEnvelopeV1.safeParse({ ...env(LINUX_HOST, bad), ok: true }).success).toBe(false);
    expect(WorldDoctorEnvelopeV1.safeParse({ ...env(LINUX_HOST, { status: "unreachable", ok: false, message: "x" }), ok: true }).success).toBe(false);
  });
  test("world.ok must follow the agent facts; status must follow ok", () => {
    expect(WorldDoctorEnvelopeV1.safeParse(env(LINUX_HOST, { ...okWorld, status: "missing_prereqs" })).success).toBe(false);
    const liar = { ...clone(WORLD_REPORT_OK), status: "ok", landlock: { supported: false, abi: null, reason: "off" } };
    expect(WorldDoctorEnvelopeV1.safeParse(env(LINUX_HOST, liar)).success).toBe(false);
    expect(WorldDoctorEnvelopeV1.safeParse(env(LINUX_HOST, { status: "unreachable", ok: true, message: "x" })).success).toBe(false);
  });
  test('world.status is "disabled" exactly when world_enabled=false', () => {
    const disabledHost = { ...clone(LINUX_HOST), ok: false };
    expect(WorldDoctorEnvelopeV1.safeParse(env(disabledHost, { status: "disabled", ok: false, message: "x" }, true)).success).toBe(false);
    expect(WorldDoctorEnvelopeV1.safeParse(env(disabledHost, { status: "unreachable", ok: false, message: "x" }, false)).success).toBe(false);
  });
  test("JSON Schema export works (draft-7) for API docs", () => {
    const js = z.toJSONSchema(WorldDoctorReportV1, { target: "draft-7" }) as { properties: Record<string, unknown> };
    expect(Object.keys(js.properties).sort()).toEqual(["collected_at_utc", "landlock", "ok", "schema_version", "world_fs_strategy"]);
  });
});
