/**
 * The Lima world VM's lifecycle (M1 spec): `warm` starts or creates the VM, waits until it is
 * READY (Lima's /run/lima-boot-done, not just `Running`), validates the socket-activated agent
 * layout, pushes what is missing or different (`limactl copy` of the embedded agent + units,
 * then guest-assets/provision.sh as root), re-validates, checks that Lima's own guestSocket
 * forward answers (and re-registers it when Lima's SSH master was replaced), and recreates the
 * VM only as a last resort, saying so. A healthy VM costs one `limactl list` + one `limactl
 * shell` (+ one connect) and changes nothing.
 *
 * `Broken` is often transient in Lima (ha.pid is written before ha.sock answers and before the
 * driver's pid file exists; a stale ha.pid after a crash): warm re-lists, then tries `limactl
 * stop -f` + `start` (non-destructive), and deletes the VM only when that fails.
 */
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import type { LimaInstance, LimaProfileName, LimaWorldReport, WarmAction } from "../contract/index.ts";
import { LIMA_SPACES_VERSION, Limactl, LimactlError, LimactlMissing, MIN_LIMA_VERSION, versionAtLeast } from "../sys/limactl.ts";
import { versionString } from "../version.ts";
import { AssetsUnavailable, loadGuestAssets, sha256, type GuestAssets } from "./assets.ts";
import { nativeSocketPath, probeNativeForward, repairNativeForward } from "./forward.ts";
import { REQUIRED_TOOLS, VALIDATE_SCRIPT, parseLayout, socketUserDropin, type ParsedLayout } from "./layout.ts";
import { checkProjectMount, imageUrls, mountsDropin, renderProfile, writableMounts } from "./profile.ts";
import { acquireWarmLock, LockBusy, writeRebuildState } from "./state.ts";
import { quietProgress, type Progress } from "../world/progress.ts";

export const LIMA_INSTANCE = "substrate";
/** From `limactl start` returning (or someone else's start) to /run/lima-boot-done. */
const READY_TIMEOUT_MS = 600_000;
/** How long a Broken status may be a hostagent starting up before we act on it. */
const BROKEN_GRACE_MS = 20_000;
/** Lima's `--timeout` for the boot after the image is in place (its default is 10 min). */
const BOOT_TIMEOUT_S = 600;
/** An image download that has not grown for this long is given up. */
const DOWNLOAD_STALL_MS = 300_000;

// One Progress for every host backend (src/world/progress.ts).
export { quietProgress, type Progress };

/** A failure the user can act on: message, next step, exit code (3 unavailable, 4 prerequisites). */
export class LimaWorldError extends Error {
  override name = "LimaWorldError";
  constructor(
    readonly exitCode: 2 | 3 | 4,
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
  /** Deadline for READY (boot-done) after a start; default 10 min. */
  readyTimeoutMs?: number;
  /** How long to wait for another warm holding the lock. */
  lockWaitMs?: number;
}

/**
 * Lima's and Virtualization.framework's own words for "this Mac cannot run the VM". Every
 * `limactl start` logs "Starting the instance `substrate` with internal VM driver `vz`"
 * (pkg/instance/start.go), so a bare /vz/ would match every failure.
 */
export const NO_VIRTUALIZATION =
  /VZ driver requires macOS 13|Virtualization is not available|VZErrorDomain|kern\.hv_support|HV_UNSUPPORTED|HV_NO_DEVICE|nested virtualization (requires|is not supported)/i;

/** The next step for a failed `limactl start`: only real virtualization errors get that hint. */
export function startHint(stderr: string, name: string): string {
  if (NO_VIRTUALIZATION.test(stderr))
    return "enable virtualization (Apple silicon, or Intel with VT-x; inside a VM turn on nested virtualization), then: substrate world warm";
  if (/already exists/i.test(stderr)) return `limactl delete -f ${name}   # then: substrate world warm`;
  if (/failed to download|no such host|connection (reset|refused)|TLS handshake|i\/o timeout|status code 404/i.test(stderr))
    return `the image download failed: check the network (and proxy), then: substrate world warm   # Lima resumes from its cache`;
  return `see ~/.lima/${name}/ha.stderr.log (or: limactl start --debug ${name}); then: substrate world warm`;
}

/** Lima's image cache (downloader.WithCache: os.UserCacheDir()/lima). */
export function limaCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (process.platform === "darwin") return join(env.HOME || homedir(), "Library", "Caches", "lima");
  return join(env.XDG_CACHE_HOME || join(env.HOME || homedir(), ".cache"), "lima");
}

/** Bytes of the image downloads in progress for these URLs (`data.tmp.*` under by-url-sha256/). */
export function downloadedBytes(urls: string[], env: NodeJS.ProcessEnv = process.env): number {
  let total = 0;
  for (const u of urls) {
    const dir = join(limaCacheDir(env), "download", "by-url-sha256", sha256(u));
    try {
      for (const f of readdirSync(dir)) if (f.startsWith("data.tmp")) total += statSync(join(dir, f)).size;
    } catch {}
  }
  return total;
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

  private limaVersion: string | null = null;
  /** `limactl --version` against MIN_LIMA_VERSION (once per LimaWorld). */
  private async requireLimaVersion(): Promise<string | null> {
    if (this.limaVersion) return this.limaVersion;
    const v = await this.limactl.version().catch(() => null);
    if (v && !versionAtLeast(v, MIN_LIMA_VERSION))
      throw new LimaWorldError(4, `Lima ${v} is too old: substrate needs Lima >= ${MIN_LIMA_VERSION}`, `${upgradeCommand(this.limactl.which())}   # then: substrate world warm`);
    this.limaVersion = v;
    return v;
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

  /**
   * Until the VM is READY: `Running` (ha.pid + driver pid alive, pkg/store/instance.go) comes
   * long before SSH answers; Lima's own readiness is /run/lima-boot-done, which boot.sh
   * removes at the start of every boot and writes after the provision scripts.
   */
  private async waitReady(actions: WarmAction[], why: string): Promise<LimaInstance> {
    const limit = this.o.readyTimeoutMs ?? READY_TIMEOUT_MS;
    const deadline = Date.now() + limit;
    let waited = false;
    let last = "";
    for (;;) {
      const inst = await this.limactl.list(this.name);
      if (inst?.status === "Running") {
        const r = await this.limactl.shell(this.name, ["test", "-e", "/run/lima-boot-done"], { timeoutMs: 30_000 }).catch((e: Error) => ({ code: -1, stdout: "", stderr: e.message }));
        if (r.code === 0) {
          if (waited) actions.push("waited_ready");
          return inst;
        }
        last = r.code === 1 ? "boot scripts still running" : `ssh not answering yet (${r.stderr.trim().split("\n").pop() ?? ""})`;
      } else last = `status ${inst?.status ?? "missing"}`;
      if (!waited) this.progress.step(`waiting for the Lima VM '${this.name}' to finish booting (${why})`);
      waited = true;
      if (Date.now() > deadline)
        throw new LimaWorldError(
          3,
          `the Lima VM '${this.name}' was not ready within ${limit / 1000} s (${last})`,
          `limactl shell ${this.name} true; see ~/.lima/${this.name}/ha.stderr.log; then: substrate world warm`,
        );
      await Bun.sleep(1000);
    }
  }

  /** The project to mount writable at create, or a clear refusal before Lima is touched. */
  private projectMount(version: string | null): string | null {
    const project = this.o.project ?? null;
    const c = checkProjectMount(project);
    if (c.error) throw new LimaWorldError(2, c.error, c.hint!);
    if (c.mount && c.mount.includes(" ") && version && !versionAtLeast(version, LIMA_SPACES_VERSION))
      throw new LimaWorldError(4, `Lima ${version} does not mount paths with spaces (virtiofs, fixed in ${LIMA_SPACES_VERSION}): ${c.mount}`, `${upgradeCommand(this.limactl.which())}   # or use a project path without spaces`);
    return c.mount;
  }

  /**
   * `limactl start FILE`: Lima first downloads the image (~600 MB, Prepare), then boots and
   * waits up to --timeout for READY. The two are bounded separately: the download by progress
   * (given up after DOWNLOAD_STALL_MS without a byte), the boot by BOOT_TIMEOUT_S (+ margin).
   */
  private async create(mount: string | null): Promise<void> {
    const assets = await this.guestAssets();
    const profile = this.o.profile ?? "slim";
    const dir = mkdtempSync(join(tmpdir(), "substrate-lima-"));
    const text = renderProfile(assets.profile(profile), mount);
    const urls = imageUrls(text);
    const ac = new AbortController();
    let phase: "prepare" | "download" | "boot" = "prepare";
    let bootDeadline = Date.now() + (BOOT_TIMEOUT_S + 120) * 1000;
    let lastBytes = -1;
    let lastGrowth = Date.now();
    let lastSay = 0;
    const onStderr = (t: string) => {
      if (/Attempting to download the image/.test(t) && phase === "prepare") {
        phase = "download";
        this.progress.step("downloading the Ubuntu 24.04 cloud image (about 600 MB, once; Lima caches it)");
      }
      if (/Downloaded the image|Using cache/.test(t) && phase !== "boot") {
        if (phase === "download") this.progress.step("image ready; booting the VM");
        phase = "boot";
        bootDeadline = Date.now() + (BOOT_TIMEOUT_S + 120) * 1000;
      }
    };
    const tick = setInterval(() => {
      if (phase === "download") {
        const b = downloadedBytes(urls, this.env);
        if (b !== lastBytes) {
          lastBytes = b;
          lastGrowth = Date.now();
        }
        if (Date.now() - lastSay >= 10_000 && b > 0) {
          lastSay = Date.now();
          this.progress.step(`downloading the image: ${Math.round(b / 1048576)} MiB so far`);
        }
        if (Date.now() - lastGrowth > DOWNLOAD_STALL_MS) ac.abort(`the image download made no progress for ${DOWNLOAD_STALL_MS / 1000} s`);
      } else if (phase === "boot" && Date.now() > bootDeadline) ac.abort(`the VM did not boot within ${BOOT_TIMEOUT_S + 120} s after its image was ready`);
      else if (phase === "prepare" && Date.now() > bootDeadline) ac.abort(`limactl start made no progress within ${BOOT_TIMEOUT_S + 120} s`);
    }, 1000);
    try {
      const file = join(dir, `${this.name}.yaml`);
      writeFileSync(file, text);
      this.progress.step(`creating the Lima VM '${this.name}' (${profile} profile${mount ? `, project ${mount} mounted writable` : ""}; the first start downloads Ubuntu 24.04)`);
      await this.limactl.create(this.name, file, { bootTimeoutS: BOOT_TIMEOUT_S, onStderr, abort: ac.signal });
    } catch (e) {
      if (e instanceof LimactlError) throw new LimaWorldError(3, `creating the Lima VM '${this.name}' failed: ${e.message}`, startHint(e.stderr, this.name));
      throw e;
    } finally {
      clearInterval(tick);
      rmSync(dir, { recursive: true, force: true });
    }
  }

  private async start(): Promise<void> {
    this.progress.step(`starting the Lima VM '${this.name}'`);
    try {
      await this.limactl.start(this.name);
    } catch (e) {
      if (e instanceof LimactlError) throw new LimaWorldError(3, `starting the Lima VM '${this.name}' failed: ${e.message}`, startHint(e.stderr, this.name));
      throw e;
    }
  }

  /** Last resort only, and said out loud: the VM's disk (and anything the user kept in it) goes. */
  private async destroy(why: string): Promise<void> {
    // A step, not a warning: it is shown on every path (the -c path prints steps, not warnings).
    this.progress.step(`deleting and re-creating the Lima VM '${this.name}' because ${why}; anything stored inside the VM (not in your mounted project) is lost`);
    await this.limactl.delete(this.name, { force: true });
  }

  /**
   * A Broken instance: first give a starting hostagent time (re-list), then the
   * non-destructive repair `limactl stop -f` + `limactl start`. Returns the instance, or null
   * when only re-creating can help.
   */
  private async repairBroken(inst: LimaInstance, actions: WarmAction[]): Promise<LimaInstance | null> {
    const deadline = Date.now() + BROKEN_GRACE_MS;
    let cur: LimaInstance | null = inst;
    while (cur?.status === "Broken" && Date.now() < deadline) {
      await Bun.sleep(1000);
      cur = await this.limactl.list(this.name);
    }
    if (!cur) return null;
    if (cur.status !== "Broken") {
      this.progress.debug(`the Lima VM '${this.name}' was Broken only while starting (now ${cur.status})`);
      return cur;
    }
    const errs = (cur as Record<string, unknown>).errors;
    const errors = Array.isArray(errs) ? errs.map(String).join("; ") : "";
    this.progress.warn(`the Lima VM '${this.name}' is Broken${errors ? ` (${errors})` : ""}; trying limactl stop -f + start`);
    try {
      await this.limactl.stop(this.name, { force: true });
      actions.push("stopped_forcibly");
      await this.start();
      actions.push("started");
      return await this.limactl.list(this.name);
    } catch (e) {
      if (e instanceof LimaWorldError || e instanceof LimactlError) {
        this.progress.warn(`stop -f + start did not repair it: ${e.message}`);
        return null;
      }
      throw e;
    }
  }

  /** One `limactl shell` that reports the whole layout. */
  async validate(inst: LimaInstance): Promise<ParsedLayout> {
    const assets = await this.guestAssets();
    const dropin = mountsDropin(writableMounts(inst.config));
    // A frozen VM or a wedged SSH master must not hang us: the timeout is a problem like any other.
    const r = await this.limactl.shell(this.name, ["sh", "-c", VALIDATE_SCRIPT], { timeoutMs: 60_000 }).catch((e: unknown) => {
      if (e instanceof LimactlError) return { code: -1, stdout: "", stderr: e.reason ?? e.message };
      throw e;
    });
    const parsed = parseLayout(r.stdout, {
      agentVersion: assets.agent.version,
      socketUnitSha: sha256(assets.socketUnit),
      serviceUnitSha: sha256(assets.serviceUnit),
      dropinSha: sha256(dropin),
      socketDropinSha: (user) => sha256(socketUserDropin(user)),
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
    const repair = !l.socket_active || l.socket_owner !== `${v.user}:substrate 660 socket` || !l.capabilities_ok || l.socket_dropin_current === false;
    const needTools = (l.missing_tools ?? []).length > 0;
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
      const args = ["--user", v.user, "--stage", stage, ...writableMounts(inst.config).flatMap((p) => ["--writable", p]), ...(repair ? ["--repair"] : []), ...(needTools ? ["--install-tools"] : [])];
      this.progress.step(`provisioning the guest (group, units, socket${needTools ? `, installing ${(l.missing_tools ?? []).join(" ")}` : ""})`);
      const r = await this.limactl.shell(this.name, ["sh", "-c", 'stage=$1; shift; sudo sh "$stage/provision.sh" "$@"; rc=$?; rm -rf "$stage"; exit $rc', "sh", stage, ...args], {
        timeoutMs: 300_000,
      });
      const changed = (/PROVISION_RESULT changed=(.*)$/m.exec(r.stdout)?.[1] ?? "").split(",").filter(Boolean);
      this.progress.debug(`provision: exit ${r.code}, changed=${changed.join(",")}\n${r.stdout}${r.stderr}`);
      if (r.code !== 0)
        throw new LimaWorldError(
          3,
          `the guest provision step failed (exit ${r.code}): ${r.stderr.trim().split("\n").slice(-3).join(" | ") || r.stdout.trim().split("\n").pop()}`,
          r.code === 5
            ? `the guest could not install its packages (network? apt lock?): limactl shell ${this.name} sudo apt-get install -y ${[...new Set((l.missing_tools ?? []).map((t) => REQUIRED_TOOLS[t] ?? t))].join(" ")}   # then: substrate world warm`
            : `limactl shell ${this.name} sudo journalctl -n 50   # then: substrate world warm`,
        );
      if (changed.includes("agent")) actions.push("pushed_agent");
      if (changed.some((c) => c.endsWith(".socket") || c.endsWith(".service"))) actions.push("pushed_units");
      if (changed.length) actions.push("provisioned");
      if (repair && changed.includes("restart")) actions.push("repaired_socket");
      if (changed.includes("tools")) actions.push("installed_tools");
      if (!needUnits && !needAgent && !changed.length) this.progress.debug("provision changed nothing");
    } finally {
      rmSync(host, { recursive: true, force: true });
    }
  }

  /**
   * Lima's guestSocket forward lives on its SSH master and dies with it (host sleep, `shell
   * --reconnect`; lima-vm/lima#5420); Lima never re-creates it. A host socket that refuses is
   * re-registered here (quietly: it is expected, not a user problem).
   */
  private async checkForward(inst: LimaInstance, actions: WarmAction[]): Promise<void> {
    const state = await probeNativeForward(inst);
    if (state === "ok" || state === "absent-not-configured") return;
    this.progress.debug(`lima-native forward ${nativeSocketPath(inst)}: ${state}; re-registering it`);
    const r = await repairNativeForward(inst, { limactl: this.limactl, env: this.env, debug: (m) => this.progress.debug(m) });
    if (r) actions.push("repaired_forward");
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
      const version = await this.requireLimaVersion();
      let inst = await this.limactl.list(this.name);
      // A project Lima would reject (or one that must not be writable) is refused before Lima is touched.
      const mount = inst ? null : this.projectMount(version);
      let why = "it was started elsewhere";
      if (!inst) {
        await this.create(mount);
        actions.push("created");
        why = "created";
      } else if (inst.status === "Broken") {
        const repaired = await this.repairBroken(inst, actions);
        if (!repaired) {
          phase("recreating", "Broken, and stop -f + start did not repair it");
          const m = this.projectMount(version);
          await this.destroy("it is Broken and `limactl stop -f` + `limactl start` did not repair it");
          await this.create(m);
          actions.push("recreated");
        } else if (repaired.status !== "Running") {
          await this.startOrRepair(actions);
        }
        why = "repaired";
      } else if (inst.status !== "Running") {
        await this.startOrRepair(actions);
        why = "started";
      }
      // A VM that was Running already: the layout check reports boot-done itself (one shell
      // round trip for a healthy VM); only when it is not there yet do we wait for it.
      let v: ParsedLayout;
      let ready: LimaInstance;
      if (inst?.status === "Running" && actions.length === 0) {
        ready = inst;
        v = await this.validate(ready);
        if (!v.user || v.layout.boot_done === false) {
          ready = await this.waitReady(actions, why);
          v = await this.validate(ready);
        }
      } else {
        ready = await this.waitReady(actions, why);
        v = await this.validate(ready);
      }
      inst = ready;
      if (v.layout.problems.length) {
        phase("provisioning", v.layout.problems.join("; "));
        for (const p of v.layout.problems) this.progress.warn(p);
        await this.push(inst, v, actions);
        v = await this.validate(inst);
      }
      if (v.layout.problems.length) {
        phase("recreating", v.layout.problems.join("; "));
        const m = this.projectMount(version);
        await this.destroy(`it is still unhealthy after provisioning (${v.layout.problems.join("; ")})`);
        await this.create(m);
        actions.push("recreated");
        inst = await this.waitReady(actions, "re-created");
        v = await this.validate(inst);
        if (v.layout.problems.length) {
          await this.push(inst, v, actions);
          v = await this.validate(inst);
        }
      }
      if (!v.layout.problems.length) await this.checkForward(inst, actions);
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

  /**
   * `limactl start`; when that fails, `stop -f` + `start` once. A VM that still does not start
   * is NOT deleted (the cause may be the network or the Mac, and the disk may hold the user's
   * data): the error says how to re-create it deliberately.
   */
  private async startOrRepair(actions: WarmAction[]): Promise<void> {
    try {
      await this.start();
      actions.push("started");
      return;
    } catch (e) {
      if (!(e instanceof LimaWorldError) || NO_VIRTUALIZATION.test(e.message)) throw e;
      this.progress.warn(`${e.message}; trying limactl stop -f + start`);
    }
    await this.limactl.stop(this.name, { force: true });
    actions.push("stopped_forcibly");
    try {
      await this.start();
      actions.push("started");
    } catch (e) {
      if (e instanceof LimaWorldError)
        throw new LimaWorldError(e.exitCode, e.message, `${e.hint}   # to start over (deletes the VM's disk): limactl delete -f ${this.name} && substrate world warm`);
      throw e;
    }
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

/** How to get a newer Lima, for the limactl that was found. */
export function upgradeCommand(limactlPath: string | null): string {
  if (limactlPath?.startsWith("/opt/local/")) return "sudo port selfupdate && sudo port upgrade lima";
  if (limactlPath && !/^\/(opt\/homebrew|usr\/local)\//.test(limactlPath) && !limactlPath.includes("/Cellar/")) return "install Lima >= " + MIN_LIMA_VERSION + " (https://lima-vm.io/docs/installation/), or: brew install lima";
  return "brew upgrade lima";
}
