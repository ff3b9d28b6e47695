#!/usr/bin/env bun
/**
 * Builds the two binaries with `bun build --compile`.
 *
 *   bun scripts/build.ts --native        this machine's agent + host (what tests use)
 *   bun scripts/build.ts --all           linux-x64/arm64 agents, linux+darwin hosts
 *   bun scripts/build.ts --target darwin-arm64 [--target …]
 *
 * Each host binary embeds the linux agent of its own CPU arch (darwin-arm64 → linux-arm64),
 * zstd-compressed, plus every file under guest-assets/. One version for both binaries:
 * package version + git commit + agent_hash (sha256 of the agent's JS bundle, so it
 * changes exactly when the agent's code does). Unchanged inputs are not rebuilt.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import pkg from "../package.json" with { type: "json" };

const ROOT = resolve(import.meta.dir, "..");
const DIST = join(ROOT, "dist");
const WORK = join(DIST, ".build");
const HOSTS = ["linux-x64", "linux-arm64", "darwin-arm64", "darwin-x64"] as const;
type HostTarget = (typeof HOSTS)[number];
type AgentTarget = "linux-x64" | "linux-arm64";
const agentFor = (h: HostTarget): AgentTarget => (h.endsWith("arm64") ? "linux-arm64" : "linux-x64");
const native = (): HostTarget => (process.arch === "arm64" ? "linux-arm64" : "linux-x64");

const sha256 = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");
const log = (m: string) => process.stderr.write(`build: ${m}\n`);

function run(argv: string[], stdin?: Uint8Array): void {
  const r = Bun.spawnSync(argv, { cwd: ROOT, stdout: "pipe", stderr: "pipe", stdin: stdin ?? "ignore" });
  if (r.exitCode !== 0) {
    log(`failed: ${argv.join(" ")}\n${r.stderr.toString()}${r.stdout.toString()}`);
    process.exit(1);
  }
}

function gitCommit(): string {
  const r = Bun.spawnSync(["git", "rev-parse", "--short=12", "HEAD"], { cwd: ROOT, stdout: "pipe", stderr: "ignore" });
  return r.exitCode === 0 ? r.stdout.toString().trim() : "nogit";
}

/** Hash of a JS bundle of `entry`: what a compile of it would contain, minus the runtime. */
async function bundleHash(entry: string): Promise<string> {
  const out = await Bun.build({ entrypoints: [join(ROOT, entry)], target: "bun", minify: true, format: "esm" });
  if (!out.success) {
    for (const l of out.logs) log(String(l));
    process.exit(1);
  }
  const h = createHash("sha256");
  for (const o of out.outputs) h.update(new Uint8Array(await o.arrayBuffer()));
  return h.digest("hex");
}

function assetHash(): string {
  const h = createHash("sha256");
  const dir = join(ROOT, "guest-assets");
  if (existsSync(dir))
    for (const f of [...new Bun.Glob("**/*").scanSync({ cwd: dir, dot: true })].sort()) h.update(f).update(readFileSync(join(dir, f)));
  return h.digest("hex");
}

function compile(entry: string, target: string, outfile: string, defines: Record<string, string>): void {
  // --splitting: every dynamic import becomes its own chunk in the binary, loaded when first
  // imported; without it the whole graph (Lima, ssh2, MCP, hono, …) is loaded at every start
  // (`substrate --version`: ~60 → ~25 ms, peak RSS 35 → 26 MiB, measured by bench/hotpath.ts).
  const argv = [process.execPath, "build", "--compile", "--minify", "--bytecode", "--format=esm", "--splitting", `--target=bun-${target}`, "--outfile", outfile];
  for (const [k, v] of Object.entries(defines)) argv.push("--define", `${k}=${JSON.stringify(v)}`);
  argv.push(entry);
  run(argv);
}

const stampOk = (file: string, key: string) => existsSync(file) && existsSync(`${file}.stamp`) && readFileSync(`${file}.stamp`, "utf8") === key;
const stamp = (file: string, key: string) => writeFileSync(`${file}.stamp`, key);

async function main() {
  const args = process.argv.slice(2);
  let hosts: HostTarget[] = [];
  if (args.includes("--all")) hosts = [...HOSTS];
  for (let i = 0; i < args.length; i++) if (args[i] === "--target") hosts.push(args[++i] as HostTarget);
  if (args.includes("--native") || hosts.length === 0) hosts.push(native());
  hosts = [...new Set(hosts)];
  for (const h of hosts) if (!HOSTS.includes(h)) throw new Error(`unknown target ${h}; one of ${HOSTS.join(", ")}`);
  mkdirSync(WORK, { recursive: true });
  const zstdLevel = args.includes("--all") || args.includes("--release") ? 19 : 6;

  const t0 = performance.now();
  const commit = process.env.SUBSTRATE_BUILD_COMMIT ?? gitCommit();
  const agentHash = (await bundleHash("agent/main.ts")).slice(0, 12);
  const hostHash = await bundleHash("src/main.ts");
  const assets = assetHash();
  const version = { version: pkg.version, commit, agent_hash: agentHash };
  log(`version ${pkg.version}+${commit}.${agentHash}`);

  for (const at of [...new Set(hosts.map(agentFor))]) {
    const key = JSON.stringify({ ...version, at, zstdLevel });
    const out = join(DIST, `substrate-world-agent-${at}`);
    const zst = join(WORK, `substrate-world-agent-${at}.zst`);
    if (stampOk(out, key) && stampOk(zst, key)) {
      log(`agent ${at}: up to date`);
      continue;
    }
    const t = performance.now();
    compile(join(ROOT, "agent/main.ts"), at, out, {
      __SUBSTRATE_COMMIT__: commit,
      __SUBSTRATE_AGENT_HASH__: agentHash,
      __SUBSTRATE_TARGET__: at,
    });
    stamp(out, key);
    // Release builds: zstd -19 (~2.6x smaller, ~90 s on 2 cores). Native/test builds: -6
    // (a few seconds, ~10% larger). Decompression at first use is ~0.2 s either way.
    run(["zstd", "-q", "-f", `-${zstdLevel}`, "-T0", out, "-o", zst]);
    stamp(zst, key);
    log(`agent ${at}: ${statSync(out).size} bytes, ${statSync(zst).size} zstd (${((performance.now() - t) / 1000).toFixed(1)} s)`);
  }

  for (const h of hosts) {
    const at = agentFor(h);
    const out = join(DIST, `substrate-${h}`);
    // The embedded agent is part of the host binary: its compressed bytes (level included)
    // belong in the key, or `make build` after `make build-native` would keep a -6 agent.
    const zstHash = sha256(readFileSync(join(WORK, `substrate-world-agent-${agentFor(h)}.zst`)));
    const key = JSON.stringify({ ...version, h, hostHash, assets, zstHash });
    if (stampOk(out, key)) {
      log(`host ${h}: up to date`);
      continue;
    }
    const t = performance.now();
    const agentBin = join(DIST, `substrate-world-agent-${at}`);
    const zst = join(WORK, `substrate-world-agent-${at}.zst`);
    const assetDir = join(ROOT, "guest-assets");
    const files = existsSync(assetDir) ? [...new Bun.Glob("**/*").scanSync({ cwd: assetDir, dot: true })].sort() : [];
    const entry = join(WORK, `entry-${h}.ts`);
    const imp = (p: string) => JSON.stringify(relative(WORK, p).startsWith(".") ? relative(WORK, p) : `./${relative(WORK, p)}`);
    writeFileSync(
      entry,
      [
        "// Generated by scripts/build.ts: registers the embedded files, then runs the CLI.",
        `import agentZst from ${imp(zst)} with { type: "file" };`,
        ...files.map((f, i) => `import a${i} from ${imp(join(assetDir, f))} with { type: "file" };`),
        `import { setEmbedded } from ${imp(join(ROOT, "src/embedded.ts"))};`,
        `import { main } from ${imp(join(ROOT, "src/cli/main.ts"))};`,
        `setEmbedded(${JSON.stringify({
          agent: {
            file: "__AGENT__",
            target: at,
            sha256: sha256(readFileSync(agentBin)),
            size: statSync(agentBin).size,
            compressed_size: statSync(zst).size,
            version: { ...version, target: at },
          },
          assets: Object.fromEntries(files.map((f, i) => [f, `__A${i}__`])),
        })
          .replace('"__AGENT__"', "agentZst")
          .replace(/"__A(\d+)__"/g, "a$1")});`,
        "process.exit(await main(process.argv.slice(2)));",
        "",
      ].join("\n"),
    );
    compile(entry, h, out, { __SUBSTRATE_COMMIT__: commit, __SUBSTRATE_AGENT_HASH__: agentHash, __SUBSTRATE_TARGET__: h });
    stamp(out, key);
    log(`host ${h}: ${statSync(out).size} bytes (${((performance.now() - t) / 1000).toFixed(1)} s)`);
  }
  log(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

await main();
