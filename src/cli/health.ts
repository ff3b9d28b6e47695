/**
 * `substrate health [--json]` — one summary: the world doctor envelope (host + world blocks,
 * parsed through the DS0 contract), the policy in force and whether it validates, the shims,
 * the trace file (size, last span) and the agent's uptime. Side-effect free, like doctor.
 *
 * Exit: 0 all healthy; 2 the policy in force does not validate; otherwise the world
 * doctor's code (3 agent unreachable, 4 disabled / missing prerequisites).
 */
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import { defineCommand } from "citty";
import { HealthReport, WorldDoctorEnvelopeV1 } from "../contract/index.ts";
import { ExitCode } from "./_errors.ts";
import { getGlobals, worldFlag } from "./_globals.ts";

/** The last complete line of a (possibly huge) JSONL file: reads only its tail. */
export function lastLine(file: string, tail = 64 * 1024): string | null {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch {
    return null;
  }
  try {
    const size = statSync(file).size;
    const len = Math.min(size, tail);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    const lines = buf.toString("utf8").split("\n").filter((l) => l.trim());
    return lines.at(-1) ?? null;
  } finally {
    closeSync(fd);
  }
}

export async function collectHealth(o: { env: NodeJS.ProcessEnv; cwd: string; worldFlag?: boolean }): Promise<{ report: HealthReport; exitCode: number; doctorText: string }> {
  const [{ worldDoctor }, broker, { substrateDir }, { listShims }, { traceFilePath, parseSpanLine }, { effectiveConfig }, { AgentClient }] = await Promise.all([
    import("../doctor/index.ts"),
    import("../broker/index.ts"),
    import("../broker/load.ts"),
    import("../shim/script.ts"),
    import("../trace/index.ts"),
    import("../config.ts"),
    import("../api/client.ts"),
  ]);
  const doc = await worldDoctor({ worldFlag: o.worldFlag });
  // Consumers read doctor JSON through the contract, never its text (DS0).
  const envelope = WorldDoctorEnvelopeV1.parse(JSON.parse(JSON.stringify(doc.envelope)));

  let policy: HealthReport["policy"];
  try {
    const loaded = broker.loadEffectivePolicySync(o.cwd);
    policy = { id: broker.findProfile(o.cwd)?.id ?? "default", file: loaded.source.file, commit: loaded.commit, valid: true, error: null };
  } catch (e) {
    if ((e as Error).name !== "PolicyError") throw e;
    policy = { id: null, file: null, commit: null, valid: false, error: (e as Error).message };
  }

  const shimDir = join(substrateDir(), "shims");
  const shims = { dir: shimDir, installed: listShims(shimDir), on_path: (o.env.PATH ?? "").split(":").includes(shimDir) };

  const traceFile = traceFilePath(o.env);
  let size = 0;
  try {
    size = statSync(traceFile).size;
  } catch {}
  const last = lastLine(traceFile);
  const span = last ? parseSpanLine(last) : undefined;

  const cfg = effectiveConfig({ env: o.env, worldFlag: o.worldFlag });
  let agent: HealthReport["agent"] = { reachable: false, socket_path: cfg.socket_path, version: null, uptime_ms: null };
  if (cfg.world_enabled && envelope.world.status !== "disabled") {
    try {
      const caps = await new AgentClient(cfg.socket_path).capabilities(3000);
      const { versionString } = await import("../version.ts");
      agent = { reachable: true, socket_path: cfg.socket_path, version: versionString(caps.agent), uptime_ms: caps.uptime_ms };
    } catch {}
  }

  const report = HealthReport.parse({
    schema_version: 1,
    ok: envelope.ok && policy.valid,
    doctor: envelope,
    policy,
    shims,
    trace: { file: traceFile, size_bytes: size, last_span: span ? { span_id: span.span_id, ts: span.ts, cmd: span.cmd ?? null } : null },
    agent,
  });
  const exitCode = report.ok ? ExitCode.OK : !policy.valid ? ExitCode.USAGE : doc.exitCode || ExitCode.UNSUPPORTED;
  return { report, exitCode, doctorText: doc.text };
}

function renderHealth(r: HealthReport, doctorText: string): string {
  const human = (n: number) => (n < 1024 ? `${n} B` : n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 ** 2).toFixed(1)} MiB`);
  const out = ["== substrate health ==", doctorText.trimEnd(), "== Policy, shims, trace, agent =="];
  out.push(r.policy.valid ? `PASS  | policy: ${r.policy.id} (${r.policy.file}, ${r.policy.commit}) validates` : `FAIL  | policy: ${r.policy.error}\nINFO  | fix: substrate policy validate`);
  out.push(`INFO  | shims: ${r.shims.installed.length ? r.shims.installed.join(" ") : "none"} in ${r.shims.dir}${r.shims.installed.length ? (r.shims.on_path ? " (on PATH)" : " (NOT on PATH)") : ""}`);
  out.push(`INFO  | trace: ${r.trace.file}, ${human(r.trace.size_bytes)}${r.trace.last_span ? `, last span ${r.trace.last_span.span_id} at ${r.trace.last_span.ts}${r.trace.last_span.cmd ? ` (${r.trace.last_span.cmd.slice(0, 60)})` : ""}` : ", no spans"}`);
  out.push(r.agent.reachable ? `PASS  | agent: ${r.agent.version} on ${r.agent.socket_path}, up ${Math.round((r.agent.uptime_ms ?? 0) / 1000)} s` : `INFO  | agent: not reachable on ${r.agent.socket_path}`);
  out.push(`INFO  | overall: ${r.ok ? "healthy" : "NOT healthy"}`);
  return `${out.join("\n")}\n`;
}

export default defineCommand({
  meta: { name: "health", description: "One summary: host + world doctor, policy in force, shims, trace file, agent uptime (--json: HealthReport)" },
  args: {
    json: { type: "boolean", description: "print the HealthReport JSON" },
    world: { type: "boolean", description: "--world / --no-world override for world_enabled" },
  },
  async run({ args, rawArgs }) {
    const r = await collectHealth({ env: process.env, cwd: process.cwd(), worldFlag: worldFlag(args, rawArgs) });
    process.stdout.write(args.json || getGlobals().json ? `${JSON.stringify(r.report, null, 2)}\n` : renderHealth(r.report, r.doctorText));
    process.exitCode = r.exitCode;
  },
});
