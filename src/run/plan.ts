/**
 * plan(intent): everything decided about one command before anything runs.
 *
 * The ONLY place a world spec is built from the policy (`worldSpecFor`: the proxy, verify
 * and replay call it too), the only place the world's environment is derived from the
 * caller's (`worldEnv`), and the only place a command's span gets its context (session,
 * parent, its own span id): every entry point therefore lands in the same session world
 * (same key, limits, allowlist) and writes linked spans under one session id.
 */
import type { EffectiveConfig } from "../contract/config.ts";
import type { FsDiff, WorldSpecInput } from "../contract/world.ts";
import type { CompiledPolicy } from "../broker/compile.ts";
import type { LoadedPolicy } from "../broker/load.ts";
import { newSpanId } from "../contract/ids.ts";
import { SpanContext, type SpanEnv } from "../trace/span.ts";
import { commandLine, type RunIntent } from "./intent.ts";
import { gate, type GateResult } from "./gate.ts";
import { mark } from "./timing.ts";

export interface Plan {
  intent: RunIntent;
  cwd: string;
  env: Record<string, string | undefined>;
  /** the command line the policy decided on */
  cmd: string;
  agentId: string;
  cfg: EffectiveConfig;
  projectDir: string;
  gate: GateResult;
  /** `--isolated` or the policy's `commands.isolated` */
  isolated: boolean;
  /** the world the command runs in (from the policy, config.toml and the intent's override) */
  world: WorldSpecInput;
  /** the span context of the command: its session and parent */
  span: SpanContext;
  /** the host command span's id (minted here; the agent's span names it as parent) */
  spanId: string;
  /** SUBSTRATE_SPAN_ID / SUBSTRATE_SESSION_ID for the command (nested calls link to it) */
  spanEnv: SpanEnv;
  /** the environment the command gets in the world (host-only names dropped, span env added) */
  worldEnv: Record<string, string>;
  say: (line: string) => void;
}

// worldEnv: zod-free (world-env.ts), shared with the CLI's fast path (src/cli/fast.ts).
export { worldEnv } from "./world-env.ts";
import { worldEnv } from "./world-env.ts";

/**
 * The world a command runs in. The policy decides the allowlist, limits and session reuse
 * (spec: WorldSpec::from_policy); network isolation is on unless the policy or config.toml
 * turns it off (either one suffices); config.toml decides the fs mode. `override` is the
 * caller's per-call change (replay/verify: a fresh world; the preview: no network).
 */
export async function worldSpecFor(o: { policy?: CompiledPolicy; cfg: Pick<EffectiveConfig, "isolate_network" | "world_fs_mode" | "world_fs_isolation">; projectDir: string; override?: Partial<WorldSpecInput> }): Promise<WorldSpecInput> {
  const { worldSpecFromPolicy } = await import("../broker/world-spec.ts");
  return {
    ...(o.policy ? worldSpecFromPolicy(o.policy, o.projectDir) : {}),
    project_dir: o.projectDir,
    isolate_network: o.cfg.isolate_network && (o.policy ? o.policy.doc.world.isolate_network : true),
    fs_mode: o.cfg.world_fs_mode,
    fs_isolation: o.cfg.world_fs_isolation,
    ...o.override,
  };
}

/** The project a cwd belongs to (the broker's rule: `$PROJECT` = the world's project dir). */
export async function projectDirOf(cwd: string): Promise<string> {
  const { projectDirFor } = await import("../broker/load.ts");
  return projectDirFor(cwd);
}

export async function plan(intent: RunIntent): Promise<Plan> {
  const env = intent.env ?? process.env;
  const cwd = intent.cwd ?? process.cwd();
  const say = intent.say ?? ((l: string) => process.stderr.write(`substrate: ${l}\n`));
  const cmd = commandLine(intent.what);
  const { effectiveConfig } = await import("../config.ts");
  const cfg = effectiveConfig({ env, worldFlag: intent.worldFlag });
  mark("config");
  const projectDir = await projectDirOf(cwd);

  // The span context: the one reader of SUBSTRATE_SESSION_ID / SUBSTRATE_SPAN_ID (trace/span.ts).
  const span = SpanContext.fromEnv(env);
  const spanId = newSpanId();
  const spanEnv = span.envFor(spanId);

  // Load the policy once: the gate decides on it and the world spec is built from it.
  let loaded: LoadedPolicy | undefined = intent.loadedPolicy;
  if (!loaded) {
    const { loadEffectivePolicySync, PolicyError } = await import("../broker/load.ts");
    try {
      loaded = loadEffectivePolicySync(cwd);
    } catch (e) {
      if (!(e instanceof PolicyError)) throw e; // the gate reports it (and refuses)
    }
  }
  mark("policy");
  const stderr = intent.stdio?.stderr ?? process.stderr;
  const stdin = intent.stdio?.stdin ?? process.stdin;
  const g = await gate({
    cmd,
    ...("argv" in intent.what ? { argv: intent.what.argv } : {}),
    cwd,
    asker: intent.asker,
    component: intent.component === "shim" ? "shim" : intent.component === "api" ? "api" : "shell",
    requireApproval: intent.requireApproval,
    ...(loaded ? { loaded } : {}),
    ...(intent.approvals ? { approvals: intent.approvals } : {}),
    stderr,
    stdin,
    isTTY: intent.io !== "buffered" && Boolean(stdin.isTTY),
    span,
    ...(cfg.world_enabled && loaded ? { dryRun: (c: string) => previewDiff(c, cwd, env, cfg, loaded!.policy, projectDir) } : {}),
  });

  mark("gate");
  const isolated = intent.isolated === true || g.action === "run_isolated";
  const world = await worldSpecFor({ policy: g.policy ?? loaded?.policy, cfg, projectDir, override: intent.worldOverride });
  mark("world");
  return {
    intent,
    cwd,
    env,
    cmd,
    agentId: intent.agentId ?? (env.SUBSTRATE_AGENT_ID || "human"),
    cfg,
    projectDir,
    gate: g,
    isolated,
    world,
    span,
    spanId,
    spanEnv,
    worldEnv: { ...worldEnv(env, cwd), ...spanEnv },
    say,
  };
}

/**
 * The approval prompt's diff preview ("writes 134 files under node_modules"): the command runs
 * once in an isolated overlay world with no network (so the preview itself has no effect
 * outside the overlay), its fs diff is returned and the result discarded.
 */
async function previewDiff(cmd: string, cwd: string, env: Record<string, string | undefined>, cfg: EffectiveConfig, policy: CompiledPolicy, projectDir: string): Promise<FsDiff> {
  const { hostBackend } = await import("../world/select.ts");
  const ready = await hostBackend(cfg, env).ensureReady({ start: true });
  const r = await ready.client.execute({
    cmd,
    cwd,
    env: worldEnv(env, cwd),
    agent_id: env.SUBSTRATE_AGENT_ID || "human",
    isolated: true,
    world: await worldSpecFor({ policy, cfg, projectDir, override: { isolate_network: true, allowed_domains: [] } }),
  });
  await ready.client.discardFsDiff(r.span_id).catch(() => {});
  return r.fs_diff ?? { writes: [], mods: [], deletes: [] };
}
