/**
 * macOS backend: the same /v1 agent, inside the Lima VM `substrate`, reached through a
 * forwarded socket (src/transport). `ensureReady({start})`:
 *
 * - fast path: VM Running → transport → /v1/capabilities, and the agent answering is this
 *   build's (version + commit + agent hash) → ready, nothing validated twice;
 * - otherwise (start allowed): `substrate world warm` logic (create/start, validate the
 *   socket-activated layout, push + provision, recreate), then the transport again.
 *
 * Modules are imported lazily: on Linux `substrate -c` never loads ssh2 or the Lima code.
 * On Linux the backend is selected only by the hidden test switch
 * SUBSTRATE_TEST_LIMA_BACKEND=1 (tests/e2e, against the limactl emulator).
 */
import type { BackendAction, BackendOptions, BackendOutcome, ReadyWorld, WorldBackend } from "./backend.ts";
import { WorldUnavailable } from "./backend.ts";

export class MacLimaBackend implements WorldBackend {
  readonly name = "mac-lima" as const;
  constructor(
    private readonly env: NodeJS.ProcessEnv = process.env,
    private readonly project: string | null = null,
  ) {}

  async ensureReady(o: { start: boolean }): Promise<ReadyWorld> {
    const [{ LimaWorld, LimaWorldError }, { connectLimaTransport, TransportUnavailable }, { loadGuestAssets }, { sameBuild, versionString }] =
      await Promise.all([import("../lima/world.ts"), import("../transport/index.ts"), import("../lima/assets.ts"), import("../version.ts")]);
    const debug = (m: string) => {
      if (this.env.SUBSTRATE_DEBUG) process.stderr.write(`substrate: debug: mac-lima: ${m}\n`);
    };
    // Steps only happen when something has to be created/pushed: worth a line each (a first
    // VM takes minutes); a healthy VM prints nothing.
    const say = (m: string) => process.stderr.write(`substrate: ${m}\n`);
    const world = new LimaWorld({ env: this.env, project: this.project, progress: { step: say, ok: debug, warn: debug, debug } });
    try {
      const expected = (await loadGuestAssets(this.env).catch(() => null))?.agent.version ?? null;
      let note: string | undefined;
      let inst = await world.instance();
      if (inst?.status === "Running") {
        try {
          const t = await connectLimaTransport(inst, { env: this.env });
          const caps = await t.client.capabilities(10_000);
          if (!expected || (sameBuild(caps.agent, expected) && caps.agent.target === expected.target))
            return { client: t.client, backend: this.name, socketPath: t.address };
          debug(`agent ${versionString(caps.agent)} differs from ${versionString(expected)}`);
          t.close();
          if (!o.start)
            throw new WorldUnavailable(`the world agent in the VM is ${versionString(caps.agent)}, this build needs ${versionString(expected)}`, "run `substrate world warm` to update it");
        } catch (e) {
          if (e instanceof WorldUnavailable) throw e;
          debug(`fast path failed: ${(e as Error).message}`);
          if (!o.start) throw e instanceof TransportUnavailable ? new WorldUnavailable(e.message, "run `substrate world warm` (or: substrate world doctor)") : e;
        }
      } else if (!o.start) {
        throw new WorldUnavailable(`the Lima VM 'substrate' is ${inst ? inst.status : "not created"}`, "run `substrate world warm`");
      }
      const r = await world.warm();
      if (r.actions.length) note = `world VM: ${r.actions.join(", ")} (${r.duration_ms} ms)`;
      inst = await world.instance();
      if (!inst) throw new WorldUnavailable("the Lima VM 'substrate' vanished after warm", "run `substrate world warm`");
      const t = await connectLimaTransport(inst, { env: this.env });
      return { client: t.client, backend: this.name, socketPath: t.address, ...(note ? { note } : {}) };
    } catch (e) {
      if (e instanceof LimaWorldError) throw new WorldUnavailable(e.message, e.hint);
      if (e instanceof TransportUnavailable) throw new WorldUnavailable(e.message, "substrate world doctor   # or: substrate world restart");
      throw e;
    }
  }

  async lifecycle(action: BackendAction, o: BackendOptions): Promise<BackendOutcome> {
    const { LimaWorld, LimaWorldError } = await import("../lima/world.ts");
    const world = new LimaWorld({ env: this.env, progress: o.progress, profile: o.profile ?? "slim", project: o.project ?? this.project });
    try {
      const report = action === "warm" ? await world.warm() : action === "status" ? await world.status() : action === "stop" ? await world.stop() : await world.restart();
      // status: unhealthy or not running is "agent unreachable" (3), like world doctor.
      return { kind: "lima", report, exitCode: report.ok ? 0 : 3 };
    } catch (e) {
      if (e instanceof LimaWorldError) return { kind: "lima", report: e.report ?? null, exitCode: e.exitCode, error: { message: e.message, hint: e.hint } };
      throw e;
    }
  }
}
