/** The guest layout parser and the profile/drop-in helpers (pure functions). */
import { describe, expect, test } from "bun:test";
import { parseLayout, socketOwner, socketUserDropin } from "../../../src/lima/layout.ts";
import { mountsDropin, renderProfile, writableMounts } from "../../../src/lima/profile.ts";
import { sha256 } from "../../../src/lima/assets.ts";
import { parseSshConfig } from "../../../src/transport/ssh-config.ts";

const v = { version: "0.1.0", commit: "abc", agent_hash: "def", target: "linux-x64" as const };
const caps = { api_version: "v1", agent: v, kernel: "6.8", arch: "x64", backend: "linux-local", uptime_ms: 1,
  features: { namespaces: { mount: true, pid: true, uts: true, ipc: true, net: true, user: true }, overlay: true, fuse_overlayfs: false, cgroup: "v2", nft: true, landlock: { supported: true, abi: 4 }, seccomp: true, pty: true },
  worlds: { active: 0, created: 0, reused: 0, executes: 0, reuse_ratio: 0 } };
const exp = { agentVersion: v, socketUnitSha: "s".repeat(64), serviceUnitSha: "t".repeat(64), dropinSha: "absent", socketDropinSha: (u: string) => sha256(socketUserDropin(u)) };
const healthy = [
  "user=alice", "home=/home/alice.guest", "boot_done=yes", "missing_tools=", `socket_dropin=${sha256(socketUserDropin("alice"))}`, "agent_rc=0", `agent_out=${JSON.stringify(v)}`, `socket_unit=${"s".repeat(64)}`, `service_unit=${"t".repeat(64)}`,
  "dropin=absent", "enabled=enabled", "active=active", `sock=${socketOwner("alice")}`, "groups_db=alice substrate", "groups_session=alice substrate", "caps_rc=0", `caps=${JSON.stringify(caps)}`,
].join("\n");
const edit = (k: string, val: string) => healthy.replace(new RegExp(`^${k}=.*$`, "m"), `${k}=${val}`);

describe("parseLayout", () => {
  test("healthy guest: no problems", () => {
    const p = parseLayout(healthy, exp);
    expect(p.layout.problems).toEqual([]);
    expect(p.user).toBe("alice");
    expect(p.home).toBe("/home/alice.guest");
    expect(p.layout.boot_done).toBe(true);
    expect(p.layout.missing_tools).toEqual([]);
    expect(p.layout.agent_version).toBe("0.1.0+abc.def");
  });
  test("each broken piece is named", () => {
    const cases: [string, string, RegExp][] = [
      ["agent_rc", "absent", /agent binary .* is missing/],
      ["agent_out", JSON.stringify({ ...v, commit: "zzz" }), /differs from this build/],
      ["socket_unit", "absent", /socket is not installed/],
      ["service_unit", "x".repeat(64), /service differs/],
      ["enabled", "disabled", /not enabled/],
      ["active", "inactive", /not active/],
      ["sock", "root:substrate 660 socket", /expected alice:substrate 660 socket/],
      ["groups_db", "alice", /not in the substrate group/],
      ["missing_tools", " nft setfattr", /lacks tools the world needs: nft, setfattr/],
      ["socket_dropin", "absent", /owner drop-in \(SocketUser=alice\)/],
      ["caps_rc", "7", /capabilities .* failed/],
      ["dropin", "d".repeat(64), /drop-in/],
    ];
    for (const [k, val, re] of cases) {
      const p = parseLayout(edit(k, val), exp);
      expect(p.layout.problems.join("\n")).toMatch(re);
    }
  });
  test("a session that predates the group is no problem (the socket is the user's own)", () => {
    const p = parseLayout(edit("groups_session", "alice"), exp);
    expect(p.layout.problems).toEqual([]);
    expect(p.layout.session_in_group).toBe(false);
  });
  test("exec format error is recognised as an arch mismatch", () => {
    const p = parseLayout(edit("agent_rc", "126").replace(/^agent_out=.*$/m, "agent_out=sh: 1: /usr/local/bin/substrate-world-agent: Exec format error"), exp);
    expect(p.layout.agent_exec_error).toMatch(/exec format error/);
    expect(p.layout.agent_current).toBe(false);
  });
  test("a running agent of another build is flagged for restart", () => {
    const p = parseLayout(edit("caps", JSON.stringify({ ...caps, agent: { ...v, agent_hash: "old" } })), exp);
    expect(p.layout.problems.join()).toMatch(/restart needed/);
  });
});

describe("profile helpers", () => {
  const prof = 'mounts:\n  - location: "~"\n    writable: false\n  - location: "${SUBSTRATE_PROJECT}"\n    writable: true\nssh:\n  localPort: 0\n';
  test("renderProfile substitutes or drops the project mount", () => {
    expect(renderProfile(prof, "/Users/a/proj")).toContain('- location: "/Users/a/proj"\n    writable: true\n');
    const none = renderProfile(prof, null);
    expect(none).not.toContain("SUBSTRATE_PROJECT");
    expect(Bun.YAML.parse(none)).toEqual({ mounts: [{ location: "~", writable: false }], ssh: { localPort: 0 } });
  });
  test("writableMounts + mountsDropin match provision.sh's format", () => {
    const cfg = { mounts: [{ location: "~", writable: false }, { location: "/b/p" , writable: true }, { location: "~/w", mountPoint: "/a/x", writable: true }] };
    expect(writableMounts(cfg, "/home/u")).toEqual(["/a/x", "/b/p"]);
    const head = "# Written by substrate provision.sh: writable project mounts and the guest home.\n[Service]\nProtectHome=no\n";
    expect(mountsDropin(["/b/p", "/a/x"])).toBe(`${head}ReadWritePaths=-/a/x -/b/p -/home\n`);
    expect(mountsDropin([])).toBe(`${head}ReadWritePaths=-/home\n`); // the guest home, always
    expect(sha256("x")).toHaveLength(64);
  });
});

describe("ssh.config", () => {
  test("Lima's file: first Host block, quoted identity", () => {
    const ep = parseSshConfig(`# comment\nHost lima-substrate\n  IdentityFile "/Users/a/.lima/_config/user"\n  StrictHostKeyChecking no\n  User alice\n  Hostname 127.0.0.1\n  Port 60022\nHost other\n  Port 1\n`);
    expect(ep).toEqual({ host: "127.0.0.1", port: 60022, user: "alice", identityFile: "/Users/a/.lima/_config/user", strictHostKeyChecking: false });
    expect(() => parseSshConfig("Host x\n  User a\n")).toThrow(/missing Port/);
  });
});
