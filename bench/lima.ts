#!/usr/bin/env bun
/**
 * The macOS/Lima path on the Linux guest harness (limactl emulator, systemd-nspawn guest):
 * guest image (cached) lookup, VM boot (existing instance), `limactl shell true`, an ssh2
 * handshake + command through the instance's ssh.config, a healthy re-warm
 * (`substrate world warm`, goal ≤ 300 ms on the harness) and `substrate -c true` through
 * the Lima backend (Lima's socket forward, emulated, and our ssh2 forward). Baseline: `limactl list` of the same instance (the
 * cheapest Lima round trip) measured in the same run. Never fails on time. Root only.
 * BENCH_N (default 20). The harness figures are not a Mac's: no VM exit, no vz, no virtiofs.
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Client } from "ssh2";
import { adoptGuest, destroyGuest, ensureGuestImage, harnessEnv, parseSshConfig } from "../tests/e2e/harness/harness.ts";
import { figure, measure, report, type Figure } from "./_stats.ts";

const ROOT = resolve(import.meta.dir, "..");
const N = Number(process.env.BENCH_N ?? 20);
const work = mkdtempSync(join(tmpdir(), "substrate-bench-lima-"));
const dist = join(ROOT, "dist/substrate-linux-x64");
if (!existsSync(dist)) {
  console.log(`lima: ${dist} missing; run make build-native first`);
  process.exit(0);
}
const bin = join(work, "substrate");
copyFileSync(dist, bin);
Bun.spawnSync(["chmod", "755", bin]);
const project = join(work, "project");
Bun.spawnSync(["mkdir", "-p", project, join(work, "lima"), join(work, "home")]);
// The Mac user owns the project; the emulator's Lima user has that uid (501).
Bun.spawnSync(["chown", "501:501", project]);
const env = { ...harnessEnv(join(work, "lima")), SUBSTRATE_HOME: join(work, "home"), SUBSTRATE_TEST_LIMA_BACKEND: "1" };
const g = adoptGuest("substrate", join(work, "lima"));
const run = (argv: string[], extra: Record<string, string> = {}) => {
  const r = Bun.spawnSync(argv, { cwd: project, env: { ...env, ...extra }, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")} → ${r.exitCode}: ${r.stderr}`);
  return r.stdout.toString();
};
const ratio = (f: Figure, base: Figure, name: string) => ({ ...f, baseline: name, ratio: f.median_ms / base.median_ms });

try {
  let t = performance.now();
  ensureGuestImage();
  console.log(`guest image lookup (cached; a cold build is ~50-65 s): ${(performance.now() - t).toFixed(0)} ms`);

  t = performance.now();
  run([bin, "world", "warm", "--json"]);
  console.log(`first warm (create from cached image + push agent + provision): ${(performance.now() - t).toFixed(0)} ms`);

  const base = figure("limactl list substrate --json (baseline)", await measure(N, () => run(["limactl", "list", "substrate", "--json"]), 2));
  report(base);

  const boots: number[] = [];
  for (let i = 0; i < Math.max(3, Math.floor(N / 5)); i++) {
    run(["limactl", "stop", "substrate"]);
    const t0 = performance.now();
    run(["limactl", "start", "substrate"]);
    boots.push(performance.now() - t0);
  }
  report(ratio(figure("limactl start (existing guest, boot to running + sshd)", boots.sort((a, b) => a - b)), base, "limactl list"));

  report(ratio(figure("limactl shell substrate true", await measure(N, () => run(["limactl", "shell", "substrate", "true"]), 2)), base, "limactl list"));

  const ep = parseSshConfig(readFileSync(join(g.dir, "ssh.config"), "utf8"));
  const key = readFileSync(ep.identityFile);
  const ssh2 = await measure(
    N,
    () =>
      new Promise<void>((res, rej) => {
        const c = new Client();
        c.on("ready", () =>
          c.exec("true", (err, s) => {
            if (err) return rej(err);
            s.on("close", () => {
              c.end();
              res();
            }).resume();
          }),
        )
          .on("error", rej)
          .connect({ host: ep.host, port: ep.port, username: ep.user, privateKey: key, hostVerifier: () => true });
      }),
    2,
  );
  report(ratio(figure("ssh2 connect + exec true (instance ssh.config)", ssh2), base, "limactl list"));

  run([bin, "world", "warm"]); // after the restarts: agent back on its socket
  const rewarm = await measure(N, () => run([bin, "world", "warm", "--json"]), 2);
  report({ ...ratio(figure("substrate world warm (healthy VM, no-op)", rewarm), base, "limactl list"), goal: "<= 300 ms on the harness" });

  report(ratio(figure("substrate -c true via the Lima backend (lima-native socket forward)", await measure(N, () => run([bin, "-c", "true"]), 2)), base, "limactl list"));
  const skipNative = { SUBSTRATE_TRANSPORT_SKIP: "lima-native" };
  report(ratio(figure("substrate -c true via the Lima backend (ssh2 uds forward)", await measure(N, () => run([bin, "-c", "true"], skipNative), 2)), base, "limactl list"));
} finally {
  const left = destroyGuest(g, { keepHome: true });
  rmSync(work, { recursive: true, force: true });
  if (left.length) console.log(`lima: left behind: ${left.join("; ")}`);
}
