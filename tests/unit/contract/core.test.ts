/** Round-trip and rejection tests for the foundation's schemas. */
import { describe, expect, test } from "bun:test";
import {
  Capabilities,
  ConfigFile,
  EffectiveConfig,
  ErrorBody,
  ExecuteRequest,
  ExecuteResponse,
  ExecuteStreamFrame,
  FsDiff,
  newSpanId,
  newWorldId,
  SpanId,
  VersionInfo,
  WorldId,
  WorldSpec,
  errorBody,
  httpStatusFor,
} from "../../../src/contract/index.ts";
import { WorldInfo } from "../../../src/api/service.ts";
import { roundTrip } from "../../helpers/contract.ts";

const version = { version: "0.1.0", commit: "abc", agent_hash: "def", target: "linux-x64" };
const resp = {
  exit: 0,
  span_id: newSpanId(),
  stdout_b64: "aGkK",
  stderr_b64: "",
  scopes_used: [],
  world_id: newWorldId(),
};

describe("contract round trips", () => {
  test("ids", () => {
    expect(WorldId.parse(newWorldId())).toMatch(/^wld_/);
    expect(SpanId.parse(newSpanId())).toMatch(/^spn_/);
    expect(WorldId.safeParse("wld_x").success).toBe(false);
    expect(SpanId.safeParse(newWorldId()).success).toBe(false);
  });

  test("ErrorBody", () => {
    roundTrip(ErrorBody, errorBody("bad_request", "nope", "try again"));
    roundTrip(ErrorBody, errorBody("internal", "boom"));
    expect(ErrorBody.safeParse({ error: { code: "weird", message: "x" } }).success).toBe(false);
    expect(httpStatusFor("rate_limited")).toBe(429);
  });

  test("VersionInfo", () => {
    roundTrip(VersionInfo, version);
    expect(VersionInfo.safeParse({ ...version, target: "windows-x64" }).success).toBe(false);
  });

  test("WorldSpec applies defaults and rejects relative paths / bad limits", () => {
    const s = roundTrip(WorldSpec, { project_dir: "/p", limits: { cpu: "2", memory: "2Gi", pids: 100 } });
    expect(s.reuse_session).toBe(true);
    expect(s.isolate_network).toBe(true);
    expect(s.fs_mode).toBe("writable");
    expect(WorldSpec.safeParse({ project_dir: "p" }).success).toBe(false);
    expect(WorldSpec.safeParse({ project_dir: "/p", limits: { memory: "lots" } }).success).toBe(false);
  });

  test("FsDiff", () => {
    roundTrip(FsDiff, { writes: ["a"], mods: [], deletes: ["b"] });
    roundTrip(FsDiff, { writes: [], mods: [], deletes: [], truncated: true, tree_hash: `sha256:${"0".repeat(64)}`, summary: "1 dirs, 2 files (truncated, see tree_hash)" });
  });

  test("ExecuteRequest: cmd xor argv, agent_id required, defaults", () => {
    const r = roundTrip(ExecuteRequest, { cmd: "ls", agent_id: "claude" });
    expect(r.pty).toBe(false);
    expect(r.isolated).toBe(false);
    roundTrip(ExecuteRequest, { argv: ["ls", "-la"], agent_id: "a", cwd: "/x", env: { A: "1" }, budget: { max_execs: 3 } });
    expect(ExecuteRequest.safeParse({ cmd: "ls" }).success).toBe(false);
    expect(ExecuteRequest.safeParse({ cmd: "ls", agent_id: "" }).success).toBe(false);
    expect(ExecuteRequest.safeParse({ agent_id: "a" }).success).toBe(false);
    expect(ExecuteRequest.safeParse({ cmd: "ls", argv: ["ls"], agent_id: "a" }).success).toBe(false);
    expect(ExecuteRequest.safeParse({ cmd: "ls", agent_id: "a", cwd: "rel" }).success).toBe(false);
  });

  test("ExecuteResponse has exactly the spec's fields (+world_id, fs_diff?)", () => {
    const r = roundTrip(ExecuteResponse, resp);
    expect(Object.keys(r).sort()).toEqual(["exit", "scopes_used", "span_id", "stderr_b64", "stdout_b64", "world_id"]);
    expect(ExecuteResponse.safeParse({ ...resp, extra: 1 }).success).toBe(false);
  });

  test("ExecuteStreamFrame", () => {
    roundTrip(ExecuteStreamFrame, { type: "stdout", data_b64: "eA==" });
    roundTrip(ExecuteStreamFrame, { type: "result", result: resp });
    roundTrip(ExecuteStreamFrame, { type: "error", error: { code: "internal", message: "x" } });
    expect(ExecuteStreamFrame.safeParse({ type: "stdin", data_b64: "" }).success).toBe(false);
  });

  test("Capabilities", () => {
    roundTrip(Capabilities, {
      api_version: "v1",
      agent: version,
      kernel: "6.1",
      arch: "x64",
      backend: "linux-local",
      features: {
        namespaces: { mount: true, pid: true, uts: true, ipc: true, net: true, user: false },
        overlay: true,
        fuse_overlayfs: false,
        cgroup: "hybrid",
        nft: true,
        landlock: { supported: true, abi: 7 },
        seccomp: true,
        pty: true,
      },
      worlds: { active: 1, created: 1, reused: 9, executes: 10, reuse_ratio: 0.9 },
      uptime_ms: 5,
    });
  });

  test("ConfigFile defaults and EffectiveConfig", () => {
    const c = roundTrip(ConfigFile, {});
    expect(c.world.enabled).toBe(true);
    expect(ConfigFile.safeParse({ world: { enabled: "yes" } }).success).toBe(false);
    expect(ConfigFile.safeParse({ nope: {} }).success).toBe(false);
    roundTrip(EffectiveConfig, {
      world_enabled: true,
      world_fs_mode: "writable",
      world_fs_isolation: "workspace",
      world_fs_require_world: false,
      isolate_network: true,
      socket_path: "/run/substrate.sock",
      config_file: null,
      world_enabled_source: "default",
    });
  });

  test("WorldInfo", () => {
    roundTrip(WorldInfo, { id: newWorldId(), project_dir: "/p", isolated: false, isolate_network: true, created_at: new Date(0).toISOString(), age_ms: 1, execs: 2 });
  });
});
