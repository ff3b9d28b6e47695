/**
 * `substrate world verify`: an enforcement self-test in a FRESH world (never the session
 * world of a real project), PASS/FAIL per guarantee, doctor text format. What a user runs
 * after install to trust the product, and what CI runs on every platform.
 *
 *   const { report, text, exitCode } = await runVerify({ env, cwd });
 *
 * The world spec comes from the policy in force for `cwd` (and config.toml), exactly as
 * `substrate -c` would build it, except a throwaway project and `reuse_session: false`; so a
 * policy that turns a guarantee off (e.g. `isolate_network: false`) makes its checks FAIL.
 * There is no switch that skips a check: exit 0 only when no check failed.
 *
 * Two worlds: a session-type world runs SESSION_PROBE, an isolated world (overlay project,
 * seccomp errno mode) runs ISOLATED_PROBE. The host side reads what only it can see: its own
 * namespace inodes (linux-local), the world's cgroup limit files, the project and sibling
 * files after the world wrote (or tried to write) them.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import type { AgentClient } from "../api/client.ts";
import { AgentApiError, AgentUnreachable } from "../api/client.ts";
import { effectiveConfig } from "../config.ts";
import { VerifyReport, type Capabilities, type ExecuteResponse, type VerifyCheck, type VerifyCheckId, type WorldBackendName, type WorldSpecInput } from "../contract/index.ts";
import { fail, info, pass, renderLines, warn, type DoctorLine } from "../doctor/render.ts";
import { ISOLATED_PROBE, parseFacts, SESSION_PROBE } from "./probe.ts";

export const VERIFY_HEADER = "== substrate world verify ==";

/** Limits the verify world asks for when the policy sets none (to prove they apply). */
export const VERIFY_LIMITS = { memory: "768Mi", pids: 4096 } as const;

export interface VerifyTarget {
  client: AgentClient;
  backend: WorldBackendName;
  socketPath: string;
}

export interface VerifyOptions {
  env: NodeJS.ProcessEnv;
  cwd: string;
  target: VerifyTarget;
  /** Where the throwaway project goes (default: tmpdir on linux-local, the project on mac). */
  baseDir?: string;
}

export interface VerifyResult {
  report: VerifyReport;
  text: string;
  exitCode: number;
}

const check = (id: VerifyCheckId, status: VerifyCheck["status"], detail: string, fix: string | null = null): VerifyCheck => ({ id, status, detail, fix });

const hostNs = (kind: "net" | "pid"): string | null => {
  try {
    return readlinkSync(`/proc/self/ns/${kind}`);
  } catch {
    return null;
  }
};

/**
 * The world spec `substrate -c` would use in `cwd`, on a throwaway project: built by the host
 * pipeline's one builder (src/run/plan.ts worldSpecFor) from the policy in force, with verify's
 * override (a fresh world, writable, limits to prove when the policy sets none).
 */
async function specFor(env: NodeJS.ProcessEnv, cwd: string, project: string): Promise<{ spec: WorldSpecInput; policyNote: string }> {
  const cfg = effectiveConfig({ env });
  const { loadEffectivePolicySync } = await import("../broker/load.ts");
  const { worldSpecFor } = await import("../run/plan.ts");
  const loaded = loadEffectivePolicySync(cwd);
  const base = await worldSpecFor({ policy: loaded.policy, cfg, projectDir: project });
  const limits = base.limits && Object.keys(base.limits).length ? base.limits : { ...VERIFY_LIMITS };
  return {
    spec: await worldSpecFor({ policy: loaded.policy, cfg, projectDir: project, override: { reuse_session: false, fs_mode: "writable", limits } }),
    policyNote: `policy ${loaded.source.file}${cfg.isolate_network ? "" : ", config.toml world.isolate_network=false"}`,
  };
}

function readLimit(file: string): string | null {
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    return null;
  }
}

/** Upper bounds for the agent's own headroom on top of the requested limits (see cgroupCheck). */
const MAX_OWN_MEMORY = 256 * 2 ** 20;
const MAX_OWN_PIDS = 64;

const toBytes = (s: string): number => {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$/.exec(s);
  if (!m) return NaN;
  const mult: Record<string, number> = { K: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 };
  return Math.round(Number(m[1]) * (m[2] ? mult[m[2]]! : 1));
};

/** Host-side read of the world's memory/pids limits from its /proc/self/cgroup lines. */
function cgroupCheck(facts: Map<string, string>, worldId: string, limits: WorldSpecInput["limits"], caps: Capabilities, local: boolean, rootless: boolean): VerifyCheck {
  const lines = (facts.get("cgroup") ?? "").split(";").filter(Boolean);
  const mine = lines.filter((l) => l.includes(worldId));
  // Issue 13 (FSVIEW): a world in its own cgroup namespace reads "/" (its commands "/cmds…");
  // its /sys/fs/cgroup is its own cgroup, whose limit files the probe read in the world.
  const nsRooted = mine.length === 0 && lines.length > 0 && lines.every((l) => /^\/(cmds.*)?$/.test(l.split(":").slice(2).join(":")));
  const limited = (v: string | undefined): v is string => v !== undefined && /^\d+$/.test(v) && Number(v) < 2 ** 60;
  if (nsRooted && (limited(facts.get("cg_memory")) || limited(facts.get("cg_pids")))) {
    const mem = facts.get("cg_memory");
    const pids = facts.get("cg_pids");
    const found: string[] = [];
    const problems: string[] = [];
    if (limited(mem) && limits?.memory) {
      const want = toBytes(limits.memory);
      const got = Number(mem);
      if (got >= want - 8192 && got <= want + MAX_OWN_MEMORY) found.push(`memory ${limits.memory} (${got} bytes incl. ${Math.round((got - want) / 2 ** 20)} MiB for the world's own tasks)`);
      else problems.push(`memory limit ${mem} bytes, requested ${limits.memory} (${want})`);
    }
    if (limited(pids) && limits?.pids !== undefined) {
      const got = Number(pids);
      if (got >= limits.pids && got <= limits.pids + MAX_OWN_PIDS) found.push(`pids ${limits.pids} (pids.max ${pids} incl. the world's own)`);
      else problems.push(`pids.max ${pids}, requested ${limits.pids}`);
    }
    if (problems.length) return check("cgroup_limits", "fail", problems.join("; "), "substrate world restart; check the agent log for cgroup warnings");
    if (found.length) return check("cgroup_limits", "pass", `limits applied (the world's own /sys/fs/cgroup): ${found.join(", ")}`);
  }
  if (mine.length === 0) {
    // The agent degrades (one warning in its log) when it cannot create the world's cgroup;
    // the spec allows that if said so: WARN, never a silent PASS. Wrong limits are a FAIL below.
    const why =
      caps.features.cgroup === "none"
        ? "no cgroup backend on this kernel"
        : rootless
          ? "the rootless agent has no delegated cgroup"
          : `the agent could not create the world's cgroup; its log says why (the world is in: ${lines.map((l) => l.split(":").slice(1).join(":")).join(" ") || "?"})`;
    return check(
      "cgroup_limits",
      "warn",
      `degraded: the world runs without CPU/memory/pids limits (${why})`,
      rootless ? "use a system agent (sudo substrate world warm) for limits" : caps.features.cgroup === "none" ? "mount cgroup v2 or the v1 memory/pids controllers" : "journalctl -u substrate-world-agent (or the agent log) for the cgroup warning; under systemd the unit needs a writable, delegated cgroup (Delegate=yes)",
    );
  }
  if (!local) return check("cgroup_limits", "pass", `world cgroup in effect (${mine.map((l) => l.split(":").slice(1).join(":")).join(" ")}); limit files live in the VM`);
  const found: string[] = [];
  const problems: string[] = [];
  for (const l of mine) {
    const [, ctrls, path] = l.split(":");
    const roots = ctrls ? ctrls.split(",").map((c) => `/sys/fs/cgroup/${c}`) : ["/sys/fs/cgroup"];
    for (const root of roots) {
      const mem = readLimit(join(root, path!, ctrls ? "memory.limit_in_bytes" : "memory.max"));
      if (mem !== null && limits?.memory) {
        // The agent adds headroom for the world's own tasks (spawner, init: agent/world/
        // session.ts withOwnHeadroom, 64 MiB today); v1 rounds to the page size. A limit
        // below the request, or far above it, is not the requested limit.
        const want = toBytes(limits.memory);
        const got = Number(mem);
        if (got >= want - 8192 && got <= want + MAX_OWN_MEMORY) found.push(`memory ${limits.memory} (${got} bytes incl. ${Math.round((got - want) / 2 ** 20)} MiB for the world's own tasks)`);
        else problems.push(`memory limit ${mem} bytes, requested ${limits.memory} (${want})`);
      }
      const pids = readLimit(join(root, path!, "pids.max"));
      if (pids !== null && limits?.pids !== undefined) {
        const got = Number(pids);
        if (got >= limits.pids && got <= limits.pids + MAX_OWN_PIDS) found.push(`pids ${limits.pids} (pids.max ${pids} incl. the world's own)`);
        else problems.push(`pids.max ${pids}, requested ${limits.pids}`);
      }
    }
  }
  if (problems.length) return check("cgroup_limits", "fail", problems.join("; "), "substrate world restart; check the agent log for cgroup warnings");
  if (found.length === 0) return check("cgroup_limits", "warn", `world cgroup present but no limit file readable (${mine.join(" ")})`, "check the agent log for cgroup warnings");
  return check("cgroup_limits", "pass", `limits applied: ${[...new Set(found)].join(", ")}`);
}

export async function runVerify(o: VerifyOptions): Promise<VerifyResult> {
  const t0 = performance.now();
  const { client, backend } = o.target;
  const local = backend === "linux-local";
  const base = mkdtempSync(join(o.baseDir ?? (local ? tmpdir() : o.cwd), "substrate-verify-"));
  const project = join(base, "project");
  const outside = join(base, "outside");
  mkdirSync(project, { mode: 0o755 });
  writeFileSync(join(project, "verify-mod.txt"), "original\n");
  writeFileSync(join(project, "verify-del.txt"), "delete me\n");
  const hostHome = o.env.HOME ?? homedir();
  const checks: VerifyCheck[] = [];
  let worldId: string | null = null;
  const { spec, policyNote } = await specFor(o.env, o.cwd, project);
  try {
    const caps = await client.capabilities(10_000);
    const hostNet = local ? hostNs("net") : null;
    const rootless = local && process.getuid?.() !== 0;
    // 1. A fresh session-type world.
    let res: ExecuteResponse;
    try {
      res = await client.execute({
        argv: ["/bin/bash", "-c", SESSION_PROBE, "verify", project, outside, hostHome],
        cwd: project,
        agent_id: "substrate-verify",
        world: spec,
        env: {
          SUBSTRATE_VERIFY_CONNECT: spec.isolate_network ? "1" : "0",
          ...(hostNet ? { SUBSTRATE_VERIFY_HOST_NETNS: hostNet } : {}),
        },
      });
    } catch (e) {
      throw new VerifyFailed(`the world did not start: ${(e as Error).message}`, e instanceof AgentUnreachable ? 3 : 4);
    }
    worldId = res.world_id;
    const f = parseFacts(Buffer.from(res.stdout_b64, "base64").toString());

    const pw = f.get("project_write") ?? "no answer";
    checks.push(pw === "ok" ? check("project_writable", "pass", `project ${project} is writable`) : check("project_writable", "fail", `project not writable: ${pw}`, "systemd mode: add the project root with `sudo substrate world warm --writable DIR`"));

    const sys = ["/usr", "/etc"].map((d) => [d, f.get(`sys_write:${d}`) ?? "no answer"] as const);
    const written = sys.filter(([, v]) => !v.startsWith("denied"));
    checks.push(written.length === 0 ? check("system_read_only", "pass", `writes to ${sys.map(([d]) => d).join(", ")} denied (${sys[0]![1].replace(/^denied: /, "")})`) : check("system_read_only", "fail", `system dirs writable in the world: ${written.map(([d]) => d).join(", ")}`, "substrate world restart; report this (rootfs binds must be read-only)"));

    const leaked = [join(outside, "pwned"), join(hostHome, ".substrate-verify-pwned")].filter((p) => existsSync(p));
    for (const p of leaked) rmSync(p, { force: true });
    checks.push(leaked.length === 0 ? check("outside_project_denied", "pass", `writes outside the project never reached the host (${outside}, ${hostHome})`) : check("outside_project_denied", "fail", `a world write reached the host: ${leaked.join(", ")} (in the world: outside ${f.get("outside_write_rc") ?? "?"}; home ${f.get("home_write_rc") ?? "?"})`, "substrate world restart; report this"));

    const pid1 = f.get("pid1") ?? "";
    const hostPid = local ? hostNs("pid") : null;
    const ownPidNs = hostPid === null || f.get("pidns") !== hostPid;
    checks.push(
      ownPidNs && /substrate-init|bash/.test(pid1)
        ? check("host_processes_invisible", "pass", `own PID namespace: ${f.get("nprocs")} processes visible, PID 1 is the world's init`)
        : check("host_processes_invisible", "fail", `the world sees host processes (PID 1: ${pid1 || "?"}, pidns ${f.get("pidns")})`, "substrate world restart"),
    );

    const netns = f.get("netns") ?? "";
    const links = (f.get("links") ?? "").split(" ").filter(Boolean);
    const sharedNet = hostNet !== null ? netns === hostNet : links.some((l) => !/^(lo|eth0)$/.test(l));
    const netFix = "set `isolate_network: true` under world: in the policy (substrate policy show), and world.isolate_network = true in ~/.substrate/config.toml";
    if (sharedNet || !spec.isolate_network) {
      const why = sharedNet ? `the world shares the host network namespace (${netns})` : "the policy turns network isolation off";
      checks.push(check("own_network_namespace", "fail", `${why}; ${policyNote}`, netFix));
      checks.push(check("egress_refused", "fail", "egress is not filtered: the world uses the host network (not probed)", netFix));
      checks.push(check("ipv6_dropped", "fail", "IPv6 is not dropped: the world uses the host network (not probed)", netFix));
    } else {
      checks.push(check("own_network_namespace", "pass", `own network namespace ${netns} (links: ${links.join(" ") || "none"})`));
      for (const [k, id, label] of [["egress4", "egress_refused", "192.0.2.1:80 (not allowlisted)"], ["egress6", "ipv6_dropped", "[2001:db8::1]:80"]] as const) {
        const v = f.get(k) ?? "no answer";
        if (v.startsWith("noroute")) checks.push(check(id, "pass", `${label}: no route out of the world`));
        else if (v.startsWith("refused")) checks.push(check(id, "pass", `${label}: ${v}`));
        else checks.push(check(id, "fail", `${label}: ${v === "connected" ? "connected" : v === "timeout" ? "no refusal within 3 s (packets may leave the world)" : v}`, "substrate world restart; check `nft` in the agent's environment (substrate world doctor)"));
      }
    }

    const nnp = f.get("nnp");
    const sc = f.get("seccomp");
    checks.push(
      nnp === "1" && sc === "2"
        ? check("seccomp_no_new_privs", "pass", "NoNewPrivs 1, Seccomp 2 (filter) in world commands")
        : check("seccomp_no_new_privs", "fail", `NoNewPrivs ${nnp ?? "?"}, Seccomp ${sc ?? "?"} (want 1 and 2)`, "substrate world doctor; the agent log says which hardening layer degraded"),
    );

    const ll = f.get("landlock_dev_write") ?? "no answer";
    const abi = caps.features.landlock.abi;
    if (ll.startsWith("denied")) checks.push(check("landlock", "pass", `Landlock active (ABI ${abi ?? "?"}): write to /dev (writable mount, not in the rw set) denied`));
    else if (!caps.features.landlock.supported) checks.push(check("landlock", "fail", "Landlock unsupported by the world's kernel", "add landlock to the kernel's lsm= boot parameter and reboot"));
    else checks.push(check("landlock", "fail", `Landlock not applied: a write to /dev succeeded (kernel ABI ${abi})`, "substrate world restart; the agent log says why hardening degraded"));

    checks.push(cgroupCheck(f, res.world_id, spec.limits, caps, local, rootless));

    // 2. An isolated world: mount denied, writes captured as a diff, host project untouched.
    let iso: ExecuteResponse | null = null;
    let isoErr: string | null = null;
    try {
      iso = await client.execute({ argv: ["/bin/bash", "-c", ISOLATED_PROBE, "verify", project], cwd: project, agent_id: "substrate-verify", isolated: true, world: spec });
    } catch (e) {
      isoErr = e instanceof AgentApiError ? `${e.code}: ${e.message}` : (e as Error).message;
    }
    if (!iso) {
      const msg = `isolated execution failed: ${isoErr}`;
      checks.push(check("mount_denied_isolated", "fail", msg, "substrate world doctor (overlay probe)"));
      checks.push(check("overlay_diff_captured", "fail", msg, "substrate world doctor (overlay probe)"));
    } else {
      const fi = parseFacts(Buffer.from(iso.stdout_b64, "base64").toString());
      const m = fi.get("mount") ?? "no answer";
      checks.push(m.startsWith("denied") ? check("mount_denied_isolated", "pass", `mount(2) in an isolated world: ${m}`) : check("mount_denied_isolated", "fail", `mount(2) in an isolated world: ${m}`, "substrate world restart; the agent log says why seccomp degraded"));
      const d = iso.fs_diff;
      const hostUntouched = !existsSync(join(project, "verify-new.txt")) && existsSync(join(project, "verify-del.txt")) && readFileSync(join(project, "verify-mod.txt"), "utf8") === "original\n";
      const captured = d !== undefined && d.writes.includes("verify-new.txt") && d.mods.includes("verify-mod.txt") && d.deletes.includes("verify-del.txt");
      checks.push(
        captured && hostUntouched
          ? check("overlay_diff_captured", "pass", `fs_diff: +${d!.writes.length} ~${d!.mods.length} -${d!.deletes.length}; host project untouched`)
          : check("overlay_diff_captured", "fail", !hostUntouched ? "an isolated write reached the host project" : `fs_diff missing entries: ${JSON.stringify(d ?? null)}`, "substrate world doctor (overlay probe)"),
      );
      await client.request("POST", `/v1/fs_diff/${iso.span_id}/discard`).catch(() => {});
    }
  } finally {
    if (worldId) await client.deleteWorld(worldId).catch(() => {});
    // Any other world of the throwaway project too (e.g. a pre-warmed isolated spare).
    for (const w of await client.listWorlds().catch(() => [])) if (w.project_dir === project) await client.deleteWorld(w.id).catch(() => {});
    rmSync(base, { recursive: true, force: true });
  }
  const report = VerifyReport.parse({
    schema_version: 1,
    ok: !checks.some((c) => c.status === "fail"),
    backend,
    socket_path: o.target.socketPath,
    world_id: worldId,
    spec: { isolate_network: spec.isolate_network ?? true, fs_mode: spec.fs_mode ?? "writable", project_dir: project },
    checks,
    duration_ms: Math.round(performance.now() - t0),
  });
  return { report, text: renderVerify(report, policyNote), exitCode: report.ok ? 0 : 4 };
}

export class VerifyFailed extends Error {
  override name = "VerifyFailed";
  constructor(
    message: string,
    readonly exitCode: 3 | 4,
  ) {
    super(message);
  }
}

const LABEL: Record<VerifyCheckId, string> = {
  project_writable: "project writable",
  system_read_only: "system read-only",
  outside_project_denied: "writes outside project denied",
  host_processes_invisible: "host processes invisible",
  own_network_namespace: "own network namespace",
  egress_refused: "non-allowlisted egress refused",
  ipv6_dropped: "IPv6 dropped",
  seccomp_no_new_privs: "seccomp + no_new_privs",
  landlock: "Landlock",
  cgroup_limits: "cgroup limits",
  mount_denied_isolated: "mount denied (isolated)",
  overlay_diff_captured: "overlay diff captured",
};

export function renderVerify(r: VerifyReport, policyNote: string): string {
  const lines: DoctorLine[] = [info(`backend ${r.backend}, socket ${r.socket_path}, ${policyNote}`)];
  for (const c of r.checks) {
    const text = `${LABEL[c.id]}: ${c.detail}`;
    lines.push(c.status === "pass" ? pass(text) : c.status === "info" ? info(text) : c.status === "warn" ? warn(text, c.fix ?? "none") : fail(text, c.fix ?? "substrate world doctor"));
  }
  const failed = r.checks.filter((c) => c.status === "fail").length;
  lines.push(info(failed ? `${failed} of ${r.checks.length} guarantees FAILED` : `all ${r.checks.length} guarantees hold (${r.duration_ms} ms)`));
  return [VERIFY_HEADER, ...renderLines(lines)].join("\n") + "\n";
}
