/** Round-trip + rejection tests for the Lima schemas (src/contract/lima.ts). */
import { describe, expect, test } from "bun:test";
import type { z } from "zod";
import { GuestLayout, LimaInstance, LimaRebuildState, LimaWorldReport } from "../../../src/contract/index.ts";
import { roundTrip } from "../../helpers/contract.ts";


const layout = {
  agent_present: true,
  agent_version: "0.1.0+abc.def",
  agent_exec_error: null,
  agent_current: true,
  socket_unit_current: true,
  service_unit_current: true,
  mounts_dropin_current: true,
  socket_enabled: true,
  socket_active: true,
  socket_owner: "root:substrate 660 socket",
  user_in_group: true,
  session_in_group: true,
  capabilities_ok: true,
  problems: [],
};

describe("lima contract", () => {
  test("LimaInstance: a real `limactl list --json` line, unknown fields kept", () => {
    const line = {
      name: "substrate", hostname: "lima-substrate", status: "Running", dir: "/Users/a/.lima/substrate", vmType: "vz", arch: "aarch64",
      cpuType: "", cpus: 2, memory: 2147483648, disk: 8589934592, sshLocalPort: 60022, sshConfigFile: "/Users/a/.lima/substrate/ssh.config",
      sshAddress: "127.0.0.1", hostAgentPID: 123, driverPID: 123, config: { vmType: "vz" }, protected: false, limaVersion: "1.0.3",
    };
    const a = roundTrip(LimaInstance, line);
    expect((a as Record<string, unknown>).hostname).toBe("lima-substrate");
    expect(LimaInstance.safeParse({ status: "Running" }).success).toBe(false);
  });

  test("GuestLayout round-trips; strict", () => {
    roundTrip(GuestLayout, layout);
    // issue 19 fields (optional): boot-done, missing tools, the socket-owner drop-in.
    roundTrip(GuestLayout, { ...layout, socket_owner: "alice:substrate 660 socket", boot_done: false, missing_tools: ["nft", "setfattr"], socket_dropin_current: false });
    expect(GuestLayout.safeParse({ ...layout, missing_tools: "nft" }).success).toBe(false);
    expect(GuestLayout.safeParse({ ...layout, extra: 1 }).success).toBe(false);
    expect(GuestLayout.safeParse({ ...layout, socket_owner: 5 }).success).toBe(false);
  });

  test("LimaRebuildState round-trips; phase is an enum", () => {
    const s = { phase: "provisioning", pid: 42, started_at: "2026-01-01T00:00:00.000Z", updated_at: "2026-01-01T00:00:01.000Z", instance: "substrate", message: "agent missing" };
    roundTrip(LimaRebuildState, s);
    expect(LimaRebuildState.safeParse({ ...s, phase: "rebuilding" }).success).toBe(false);
  });

  test("LimaWorldReport round-trips (with and without error)", () => {
    const r = { command: "warm", ok: true, instance: "substrate", vm_status: "Running", profile: "slim", actions: ["created", "pushed_agent"], layout, expected_agent_version: "0.1.0+abc.def", duration_ms: 812 };
    roundTrip(LimaWorldReport, r);
    roundTrip(LimaWorldReport, { ...r, ok: false, layout: null, profile: null, error: { message: "x", hint: "y" } });
    expect(LimaWorldReport.safeParse({ ...r, actions: ["teleported"] }).success).toBe(false);
    // issue 19 actions
    roundTrip(LimaWorldReport, { ...r, actions: ["waited_ready", "stopped_forcibly", "started", "installed_tools", "repaired_forward"] });
  });
});
