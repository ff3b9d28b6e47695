#!/usr/bin/env bun
/**
 * substrate-world-agent: serves the /v1 API on a Unix socket and runs commands in worlds.
 *
 *   substrate-world-agent [--listen /run/substrate.sock] [--state-dir DIR] [--pid-file F]
 *   substrate-world-agent --version [--json]
 *
 * Hidden: `__world CONFIG` / `__world-serve CONFIG STATE` are the in-world spawner's two stages
 * (see world/spawner.ts).
 */
import { parseArgs } from "node:util";
import { writeFileSync, rmSync } from "node:fs";
import { resolve as resolvePath } from "node:path";
import type { SpawnerHooks } from "./world/spawner.ts";

/**
 * What the spawner runs inside the world: the overlay for isolated worlds (before
 * pivot_root) and, once the root is built, no_new_privs + capabilities + Landlock + seccomp
 * on itself — inherited by every command it forks. Loaded only by stage 1 (every mode loads
 * only what it runs: the binary is built with --splitting, and stage 2 starts once per world).
 */
async function spawnerHooks(): Promise<SpawnerHooks> {
  const [{ hardenSelf, worldRwPaths }, { mountOverlay }] = await Promise.all([import("./world/harden.ts"), import("./world/overlay.ts")]);
  return {
    mountOverlay: (o) => void mountOverlay(o),
    harden: (c, extra) =>
      hardenSelf({
        mode: c.harden!.mode,
        landlock: c.harden!.landlock ? { rw: worldRwPaths(c.project, c.projectReadOnly) } : false,
        protectPids: extra.protectPids,
        allowPtrace: c.harden!.allowPtrace,
      }),
  };
}
import { selfArgv } from "./self.ts";
import { versionInfo, versionString } from "../src/version.ts";

const USAGE = `substrate-world-agent — the Substrate world service

Usage:
  substrate-world-agent [--listen PATH] [--state-dir DIR] [--pid-file FILE]
  substrate-world-agent --version [--json]

Options:
  --listen PATH     Unix socket to bind when not socket-activated (default /run/substrate.sock,
                    or $SUBSTRATE_WORLD_SOCKET)
  --state-dir DIR   where worlds keep their runtime files (default /run/substrate)
  --pid-file FILE   write our PID here (removed on exit)
  --version         print the build version (--json: {version, commit, agent_hash, target})

Under systemd socket activation (LISTEN_FDS=1) the agent serves the inherited fd 3.`;

const log = (msg: string) => process.stderr.write(`substrate-world-agent: ${msg}\n`);

async function serve(values: { listen?: string; "state-dir"?: string; "pid-file"?: string }): Promise<number> {
  const [{ listen, ListenError }, { WorldManager }, { WorldAgentService }, { buildRouter, answerClientError }, { StreamServer }] = await Promise.all([
    import("./server.ts"),
    import("./world/manager.ts"),
    import("./service.ts"),
    import("../src/api/router.ts"),
    import("./stream.ts"), // issue 6: GET /v1/stream (WebSocket)
  ]);
  const stateDir = resolvePath(values["state-dir"] ?? process.env.SUBSTRATE_STATE_DIR ?? "/run/substrate");
  const path = resolvePath(values.listen ?? process.env.SUBSTRATE_WORLD_SOCKET ?? "/run/substrate.sock");
  if (values["pid-file"]) values["pid-file"] = resolvePath(values["pid-file"]);
  // A long-lived service holds no directory: its starter's cwd (a temp project) may be deleted,
  // and every Bun it starts (spawners, helpers) would then refuse to run.
  try {
    process.chdir("/");
  } catch {}
  const [{ OVERLAY_BASE }, { approveSocketFor }] = await Promise.all([import("./world/overlay.ts"), import("../src/api/approver.ts")]);
  // Worlds never see the agent's own doors (a read-only mount does not stop connect(2)).
  const worlds = new WorldManager({ stateDir, selfArgv: selfArgv(), log, hide: [path, approveSocketFor(path), process.env.SUBSTRATE_OVERLAY_DIR ?? OVERLAY_BASE] });
  (await import("./egress/world.ts")).prewarmEgressHelper(selfArgv()); // issue 15 (EGRESS): the first world's helper loads now
  // Issue 18 faults (RELIABILITY): a second agent on a live socket stops before it sweeps or
  // collects anything of the agent that serves it.
  if (!(await import("./server.ts")).socketActivated() && (await (await import("../src/sys/unix-socket.ts")).socketAnswers(path))) {
    log(`another agent is already serving ${path}`);
    return 3;
  }
  const stale = await worlds.sweepStale();
  if (stale.length) log(`removed ${stale.length} stale world dir(s) from a previous run`);
  // Spec env: SUBSTRATE_NETNS_GC_INTERVAL_SECS (600, 0 = off), SUBSTRATE_NETNS_GC_TTL_SECS (0 = off).
  // Issue 15 (EGRESS): worlds have no host-side network any more; the GC removes gateway socket dirs of dead worlds.
  const { startNetnsGc } = await import("./egress/gc.ts");
  const gc = startNetnsGc({ stateDir, worlds: () => worlds.list(), destroyWorld: async (id) => void (await worlds.destroy(id)), log });
  // What a crashed agent left: gateway socket dirs of dead worlds, empty world cgroups.
  await gc.sweep().catch((e) => log(`netns sweep: ${(e as Error).message}`));
  const cgs = await worlds.sweepStaleCgroups();
  if (cgs.length) log(`removed ${cgs.length} stale world cgroup(s)`);
  // Isolated results nobody applied or discarded: dropped after SUBSTRATE_RESULT_TTL_SECS
  // (default 7 days), checked at start and hourly.
  const { gcOverlayDirs } = await import("./world/apply.ts");
  const resultTtlMs = Number(process.env.SUBSTRATE_RESULT_TTL_SECS ?? 7 * 24 * 3600) * 1000;
  const overlayBase = process.env.SUBSTRATE_OVERLAY_DIR;
  const gcResults = () => {
    try {
      gcOverlayDirs({ olderThanMs: resultTtlMs, keep: worlds.list().map((w) => w.id), ...(overlayBase ? { baseDir: overlayBase } : {}) });
    } catch (e) {
      log(`result gc: ${(e as Error).message}`);
    }
  };
  gcResults();
  const resultTimer = setInterval(gcResults, 3600_000);
  resultTimer.unref();
  const svc = new WorldAgentService(worlds);
  // Issue 17: the policy applies to every execute and stream, however it arrived (policyd.ts).
  const policy = (await import("./policyd.ts")).policyGate(selfArgv(), log);
  svc.gate = policy;
  const streams = new StreamServer({ svc, worlds, log });
  let server;
  try {
    server = await listen(buildRouter(svc), { path }, streams.onUpgrade);
  } catch (e) {
    if (e instanceof ListenError) {
      log(e.message);
      return e.exitCode;
    }
    throw e;
  }
  // Issue 18 faults (RELIABILITY): the socket is ours and no world runs yet — overlay dirs of
  // isolated runs a previous agent never finished (no result record) go now, not in 7 days.
  try {
    const { RESULT_RECORD } = await import("./world/isolated_results.ts");
    const gone = gcOverlayDirs({ olderThanMs: resultTtlMs, keep: worlds.list().map((w) => w.id), orphans: { record: RESULT_RECORD }, ...(overlayBase ? { baseDir: overlayBase } : {}) });
    if (gone.length) log(`removed ${gone.length} unfinished isolated run(s) of a previous agent`);
  } catch (e) {
    log(`result gc: ${(e as Error).message}`);
  }
  // Issue 18.5 (RELIABILITY): approvals are answered on a socket of their own beside the API
  // socket (agent/approver.ts), never on the API socket the asking client uses.
  const approver = await (await import("./approver.ts"))
    .startAgentApprover({ apiSocket: server.path, scopes: svc.scopes, gid: (await import("./server.ts")).groupId("substrate"), log })
    .catch((e: Error) => {
      log(`approver socket: ${e.message}; scope approvals cannot be answered until it is free`);
      return null;
    });
  server.http.on("clientError", answerClientError); // issue 6: JSON even for unparsable requests
  (await import("../src/api/deadline.ts")).enforceHeaderDeadline(server.http); // issue 6: slowloris guard
  if (values["pid-file"]) writeFileSync(values["pid-file"], `${process.pid}\n`);
  log(`${versionString()} listening on ${server.path} (${server.mode})`);

  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    log(`${sig}: stopping`);
    streams.close();
    policy.close();
    await server.close();
    await approver?.close(); // issue 18.5
    gc.stop();
    clearInterval(resultTimer);
    await worlds.shutdown();
    if (values["pid-file"]) rmSync(values["pid-file"], { force: true });
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  return await new Promise<number>(() => {});
}

export async function main(argv: string[]): Promise<number> {
  if (argv[0] === "__world") {
    const { runSpawner } = await import("./world/spawner-setup.ts");
    await runSpawner(JSON.parse(argv[1] ?? "{}"), await spawnerHooks()); // execve's into __world-serve
    return 1;
  }
  // Issue 15 (EGRESS): the in-world egress helper (agent/egress/helper.ts), started by
  // agent/egress/world.ts inside the world's network namespace; config JSON on stdin.
  if (argv[0] === "__egress") {
    const { egressHelperMain } = await import("./egress/helper.ts");
    return egressHelperMain();
  }
  if (argv[0] === "__policyd") return (await import("./policyd.ts")).policydMain(); // issue 17: the caller's policy gate
  if (argv[0] === "__world-serve") {
    const { serveSpawner } = await import("./world/spawner.ts");
    await serveSpawner(JSON.parse(argv[1] ?? "{}"), JSON.parse(argv[2] ?? "{}"));
    return -1; // keep serving; the lifeline decides when we exit
  }
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        listen: { type: "string" },
        "state-dir": { type: "string" },
        "pid-file": { type: "string" },
        version: { type: "boolean" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    }));
  } catch (e) {
    log(`${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.version) {
    console.log(values.json ? JSON.stringify(versionInfo()) : `substrate-world-agent ${versionString()}`);
    return 0;
  }
  return serve(values);
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => {
      if (code >= 0) process.exit(code);
    },
    (e) => {
      log(`internal error: ${(e as Error).stack ?? e}`);
      process.exit(1);
    },
  );
}
