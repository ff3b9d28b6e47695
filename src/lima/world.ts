/**
 * The Lima world VM's lifecycle (M1 spec): `warm` starts or creates the VM, validates the
 * socket-activated agent layout, pushes what is missing or different (`limactl copy` of
 * the embedded agent + units, then guest-assets/provision.sh as root), re-validates, and
 * destroys + recreates the VM when it stays broken (guest state is disposable). A healthy
 * VM costs one `limactl list` + one `limactl shell` and changes nothing.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LimaInstance, LimaProfileName, LimaWorldReport, WarmAction } from "../contract/index.ts";
import { Limactl, LimactlError, LimactlMissing } from "../sys/limactl.ts";
import { versionString } from "../version.ts";
import { AssetsUnavailable, loadGuestAssets, sha256, type GuestAssets } from "./assets.ts";
import { VALIDATE_SCRIPT, parseLayout, type ParsedLayout } from "./layout.ts";
import { mountsDropin, renderProfile, writableMounts } from "./profile.ts";
import { acquireWarmLock, LockBusy, writeRebuildState } from "./state.ts";

export const LIMA_INSTANCE = "substrate";
const RUNNING_TIMEOUT_MS = 120_000;

/** Progress for humans (consola in the CLI); the backend passes a quiet one. */
export interface Progress {
  step(msg: string): void;
  ok(msg: string): void;
  warn(msg: string): void;
  debug(msg: string): void;
}
export const quietProgress: Progress = { step() {}, ok() {}, warn() {}, debug() {} };

/** A failure the user can act on: message, next step, exit code (3 unavailable, 4 prerequisites). */
export class LimaWorldError extends Error {
  override name = "LimaWorldError";
  constructor(
    readonly exitCode: 3 | 4,
    message: string,
    readonly hint: string,
    readonly report?: LimaWorldReport,
  ) {
    super(message);
  }
}

export interface LimaWorldOptions {
  limactl?: Limactl;
  instance?: string;
  env?: NodeJS.ProcessEnv;
  progress?: Progress;
  /** Project directory mounted writable when the VM is created (null: none). */
  project?: string | null;
  profile?: LimaProfileName;
  runningTimeoutMs?: number;
  /** How long to wait for another warm holding the lock. */
  lockWaitMs?: number;
}

/** Lima's words for "the Mac cannot virtualize" → the fix. */
function startHint(e: LimactlError, name: string): string {
  if (/virtualiz|hypervisor|vz|HV_|kern\.hv/i.test(e.stderr))
    return "enable virtualization (Apple silicon, or Intel with VT-x; inside a VM turn on nested virtualization), then: substrate world warm";
  if (/already exists/i.test(e.stderr)) return `limactl delete -f ${name}   # then: substrate world warm`;
  return `see ~/.lima/${name}/ha.stderr.log (or: limactl start --debug ${name}); then: substrate world warm`;
}

export class LimaWorld {
  readonly name: string;
  readonly limactl: Limactl;
  private readonly env: NodeJS.ProcessEnv;
  private readonly progress: Progress;
  private readonly o: LimaWorldOptions;
  private assets: GuestAssets | null = null;

  constructor(o: LimaWorldOptions = {}) {
    this.o = o;
    this.env = o.env ?? process.env;
    this.name = o.instance ?? LIMA_INSTANCE;
    this.limactl = o.limactl ?? new Limactl({ env: this.env });
    this.progress = o.progress ?? quietProgress;
  }

  private async guestAssets(): Promise<GuestAssets> {
    if (!this.assets) {
      try {
        this.assets = await loadGuestAssets(this.env);
      } catch (e) {
        if (e instanceof AssetsUnavailable) throw new LimaWorldError(4, e.message, e.hint);
        throw e;
      }
    }
    return this.assets;
  }

  private requireLima(): void {
    if (!this.limactl.which())
      throw new LimaWorldError(4, "Lima (limactl) is not installed", "brew install lima   # then: substrate world warm (docs/dev/mac_world_setup.md)");
  }

  async instance(): Promise<LimaInstance | null> {
    this.requireLima();
    try {
      return await this.limactl.list(this.name);
    } catch (e) {
      if (e instanceof LimactlMissing) this.requireLima();
      throw e;
    }
  }

  private async waitRunning(): Promise<LimaInstance> {
    const limit = this.o.runningTimeoutMs ?? RUNNING_TIMEOUT_MS;
    const deadline = Date.now() + limit;
    for (;;) {
      const inst = await this.limactl.list(this.name);
      if (inst?.status === "Running") return inst;
      if (Date.now() > deadline)
        throw new LimaWorldError(
          3,
          `the Lima VM '${this.name}' did not reach Running within ${limit / 1000} s (status: ${inst?.status ?? "missing"})`,
          `check virtualization and ~/.lima/${this.name}/ha.stderr.log; then: substrate world warm`,
        );
      await Bun.sleep(500);
    }
  }

  private async create(): Promise<void> {
    const assets = await this.guestAssets();
    const profile = this.o.profile ?? "slim";
    const dir = mkdtempSync(join(tmpdir(), "substrate-lima-"));
    try {
      const file = join(dir, `${this.name}.yaml`);
      writeFileSync(file, renderProfile(assets.profile(profile), this.o.project ?? null));
      this.progress.step(`creating the Lima VM '${this.name}' (${profile} profile; the first start downloads Ubuntu 24.04)`);
      await this.limactl.create(this.name, file);
    } catch (e) {
      if (e instanceof LimactlError) throw new LimaWorldError(3, `creating the Lima VM '${this.name}' failed: ${e.message}`, startHint(e, this.name));
      throw e;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  private async start(): Promise<void> {
    this.progress.step(`starting the Lima VM '${this.name}'`);
    try {
      await this.limactl.start(this.name);
    } catch (e) {
      if (e instanceof LimactlError) throw new LimaWorldError(3, `starting the Lima VM '${this.name}' failed: ${e.message}`, startHint(e, this.name));
      throw e;
    }
  }

  private async destroy(): Promise<void> {
    this.progress.step(`deleting the Lima VM '${this.name}' (guest state is disposable)`);
    await this.limactl.delete(this.name, { force: true });
  }

  /** One `limactl shell` that reports the whole layout. */
  async validate(inst: LimaInstance): Promise<ParsedLayout> {
    const assets = await this.guestAssets();
    const dropin = mountsDropin(writableMounts(inst.config));
    const r = await this.limactl.shell(this.name, ["sh", "-c", VALIDATE_SCRIPT], { timeoutMs: 60_000 });
    const parsed = parseLayout(r.stdout, {
      agentVersion: assets.agent.version,
      socketUnitSha: sha256(assets.socketUnit),
      serviceUnitSha: sha256(assets.serviceUnit),
      dropinSha: dropin === null ? "absent" : sha256(dropin),
    });
    if (r.code !== 0 && !parsed.user) parsed.layout.problems.unshift(`limactl shell failed (exit ${r.code}): ${r.stderr.trim().slice(-300)}`);
    this.progress.debug(`layout: ${JSON.stringify(parsed.layout)}`);
    return parsed;
  }

  /** Copies what differs into a stage dir in the guest and runs provision.sh as root. */
  private async push(inst: LimaInstance, v: ParsedLayout, actions: WarmAction[]): Promise<void> {
    const assets = await this.guestAssets();
    const l = v.layout;
    const needAgent = !l.agent_present || !l.agent_current || l.agent_exec_error !== null;
    const needUnits = !l.socket_unit_current || !l.service_unit_current;
    const repair = !l.socket_active || l.socket_owner !== "root:substrate 660 socket" || !l.capabilities_ok;
    if (!v.home) throw new LimaWorldError(3, `cannot run commands in the Lima VM '${this.name}': ${l.problems[0] ?? "no answer"}`, `limactl shell ${this.name} true   # must work; then: substrate world warm`);
    const stage = `${v.home}/.substrate-stage`;
    const host = mkdtempSync(join(tmpdir(), "substrate-stage-"));
    try {
      const files = ["provision.sh", "substrate-world-agent.socket", "substrate-world-agent.service"];
      writeFileSync(join(host, files[0]!), assets.provision, { mode: 0o755 });
      writeFileSync(join(host, files[1]!), assets.socketUnit, { mode: 0o644 });
      writeFileSync(join(host, files[2]!), assets.serviceUnit, { mode: 0o644 });
      await this.limactl.check(["shell", this.name, "sh", "-c", 'rm -rf "$1" && mkdir -p "$1"', "sh", stage]);
      this.progress.step(`pushing ${needAgent ? "the agent, " : ""}units and provision step into the VM`);
      await this.limactl.copyIn(this.name, files.map((f) => join(host, f)), `${stage}/`);
      if (needAgent) {
        const agentPath = await assets.agent.path();
        this.progress.step(`copying the world agent ${assets.agent.version ? versionString(assets.agent.version) : ""} into the VM`);
        await this.limactl.copyIn(this.name, [agentPath], `${stage}/substrate-world-agent`);
      }
      const args = ["--user", v.user, "--stage", stage, ...writableMounts(inst.config).flatMap((p) => ["--writable", p]), ...(repair ? ["--repair"] : [])];
      this.progress.step("provisioning the guest (group, units, socket)");
      const r = await this.limactl.shell(this.name, ["sh", "-c", 'stage=$1; shift; sudo sh "$stage/provision.sh" "$@"; rc=$?; rm -rf "$stage"; exit $rc', "sh", stage, ...args], {
        timeoutMs: 300_000,
      });
      const changed = (/PROVISION_RESULT changed=(.*)$/m.exec(r.stdout)?.[1] ?? "").split(",").filter(Boolean);
      this.progress.debug(`provision: exit ${r.code}, changed=${changed.join(",")}\n${r.stdout}${r.stderr}`);
      if (r.code !== 0)
        throw new LimaWorldError(
          3,
          `the guest provision step failed (exit ${r.code}): ${r.stderr.trim().split("\n").slice(-3).join(" | ") || r.stdout.trim().split("\n").pop()}`,
          `limactl shell ${this.name} sudo journalctl -n 50   # then: substrate world warm`,
        );
      if (changed.includes("agent")) actions.push("pushed_agent");
      if (changed.some((c) => c.endsWith(".socket") || c.endsWith(".service"))) actions.push("pushed_units");
      if (changed.length) actions.push("provisioned");
      if (repair && changed.includes("restart")) actions.push("repaired_socket");
      if (!needUnits && !needAgent && !changed.length) this.progress.debug("provision changed nothing");
    } finally {
      rmSync(host, { recursive: true, force: true });
    }
  }

  /** Only the session lacks the group (SSH master from before the usermod): reconnect. */
  private async reconnectIfNeeded(v: ParsedLayout, inst: LimaInstance, actions: WarmAction[]): Promise<ParsedLayout> {
    if (v.layout.user_in_group && !v.layout.session_in_group) {
      this.progress.step("reconnecting SSH so the session picks up the substrate group");
      await this.limactl.reconnect(this.name);
      actions.push("reconnected");
      return this.validate(inst);
    }
    return v;
  }

  private report(command: LimaWorldReport["command"], t0: number, inst: LimaInstance | null, actions: WarmAction[], v: ParsedLayout | null, assets: GuestAssets | null): LimaWorldReport {
    const ok = v !== null && v.layout.problems.length === 0;
    return {
      command,
      ok: command === "stop" ? true : ok,
      instance: this.name,
      vm_status: inst?.status || "NotFound",
      profile: this.o.profile ?? null,
      actions,
      layout: v?.layout ?? null,
      expected_agent_version: assets?.agent.version ? versionString(assets.agent.version) : null,
      duration_ms: Math.round(performance.now() - t0),
    };
  }

  /** Start/create, validate, repair; idempotent. Throws LimaWorldError with a next step. */
  async warm(command: "warm" | "restart" = "warm"): Promise<LimaWorldReport> {
    const t0 = performance.now();
    this.requireLima();
    const assets = await this.guestAssets();
    let release: () => void;
    try {
      release = await acquireWarmLock(this.o.lockWaitMs ?? 600_000, this.env);
    } catch (e) {
      if (e instanceof LockBusy) throw new LimaWorldError(3, e.message, "wait for it to finish (substrate world status), then retry");
      throw e;
    }
    const actions: WarmAction[] = [];
    const phase = (p: "starting" | "provisioning" | "recreating" | "ready" | "failed", m?: string) => writeRebuildState(this.name, p, m, this.env);
    try {
      phase("starting");
      let inst = await this.limactl.list(this.name);
      if (!inst) {
        await this.create();
        actions.push("created");
      } else if (inst.status === "Broken") {
        this.progress.warn(`the Lima VM '${this.name}' is Broken; recreating it`);
        await this.destroy();
        await this.create();
        actions.push("recreated");
      } else if (inst.status !== "Running") {
        await this.start();
        actions.push("started");
      }
      if (inst?.status !== "Running") inst = await this.waitRunning(); // a healthy VM: one list only

      let v = await this.validate(inst);
      v = await this.reconnectIfNeeded(v, inst, actions);
      if (v.layout.problems.length) {
        phase("provisioning", v.layout.problems.join("; "));
        for (const p of v.layout.problems) this.progress.warn(p);
        await this.push(inst, v, actions);
        v = await this.validate(inst);
        v = await this.reconnectIfNeeded(v, inst, actions);
      }
      if (v.layout.problems.length) {
        phase("recreating", v.layout.problems.join("; "));
        this.progress.warn(`still unhealthy after provisioning (${v.layout.problems.join("; ")}); recreating the VM`);
        await this.destroy();
        await this.create();
        actions.push("recreated");
        inst = await this.waitRunning();
        v = await this.validate(inst);
        if (v.layout.problems.length) {
          await this.push(inst, v, actions);
          v = await this.validate(inst);
          v = await this.reconnectIfNeeded(v, inst, actions);
        }
      }
      const report = this.report(command, t0, inst, actions, v, assets);
      if (v.layout.problems.length) {
        const exec = v.layout.agent_exec_error?.includes("exec format") ?? false;
        throw new LimaWorldError(
          3,
          `the world VM is unhealthy even after re-provisioning and re-creating it: ${v.layout.problems.join("; ")}`,
          exec
            ? "the embedded agent does not match the VM's CPU arch: use the substrate build for this Mac's arch (darwin-arm64 ↔ linux-arm64)"
            : `limactl shell ${this.name} sudo journalctl -u substrate-world-agent -n 50   # and: substrate world doctor`,
          report,
        );
      }
      phase("ready");
      return report;
    } catch (e) {
      phase("failed", (e as Error).message);
      if (e instanceof LimactlError) throw new LimaWorldError(3, e.message, `limactl list ${this.name}   # then: substrate world warm`);
      throw e;
    } finally {
      release();
    }
  }

  /** Read-only: VM status and, when Running, the layout check. */
  async status(): Promise<LimaWorldReport> {
    const t0 = performance.now();
    const inst = await this.instance();
    const assets = await this.guestAssets().catch(() => null);
    const v = inst?.status === "Running" && assets ? await this.validate(inst) : null;
    return this.report("status", t0, inst, [], v, assets);
  }

  async stop(): Promise<LimaWorldReport> {
    const t0 = performance.now();
    const inst = await this.instance();
    const actions: WarmAction[] = [];
    if (inst?.status === "Running") {
      this.progress.step(`stopping the Lima VM '${this.name}'`);
      await this.limactl.stop(this.name);
      actions.push("stopped");
    } else if (inst?.status === "Broken") {
      await this.limactl.stop(this.name, { force: true });
      actions.push("stopped");
    }
    return this.report("stop", t0, await this.limactl.list(this.name), actions, null, null);
  }

  async restart(): Promise<LimaWorldReport> {
    const stopped = await this.stop();
    const r = await this.warm("restart");
    return { ...r, actions: [...stopped.actions, ...r.actions] };
  }
}
