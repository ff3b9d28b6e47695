#!/usr/bin/env bun
/**
 * `make release VERSION=x.y.z` — the files one uploads as a release:
 *
 *   dist/release/substrate-<version>-<os>-<arch>.tar.gz   one per host target
 *   dist/release/install.sh                               the installer, base URL filled in
 *   dist/release/SHA256SUMS                               sha256sum format, sorted by name
 *   dist/release/Formula/substrate.rb                     Homebrew formula (URLs + sha256)
 *
 *   bun scripts/release.ts [--version X] [--commit REF] [--out DIR] [--base URL]
 *                          [--native | --target T …] [--fast]
 *
 * Reproducible by construction (docs/RELEASE.md): the release is built from `git archive
 * <commit>` in a fresh temp tree — never from the shared work tree, whose uncommitted edits
 * and .stamp files would leak in — with SUBSTRATE_BUILD_COMMIT pinned; `bun build --compile`
 * output depends only on its inputs and the outfile's basename (measured); tarballs get a
 * fixed mtime (the commit's time, or SOURCE_DATE_EPOCH), owner 0/0, sorted names and
 * explicit modes; gzip -n leaves out the name and time.
 *
 * --fast: zstd -6 for the embedded agent instead of -19 (tests only: ~90 s less per agent).
 */
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import pkg from "../package.json" with { type: "json" };

const ROOT = resolve(import.meta.dir, "..");
export const HOSTS = ["darwin-arm64", "darwin-x64", "linux-arm64", "linux-x64"] as const;
export type HostTarget = (typeof HOSTS)[number];
/** One setting for where releases live; GitHub's layout: <base>/download/v<version>/<file>. */
export const DEFAULT_BASE = "https://github.com/substrate-dev/substrate/releases";
const native = (): HostTarget => (process.arch === "arm64" ? "linux-arm64" : "linux-x64");

const log = (m: string) => process.stderr.write(`release: ${m}\n`);
class ReleaseError extends Error {
  constructor(
    message: string,
    readonly hint: string,
    readonly exitCode = 2,
  ) {
    super(message);
  }
}

function run(argv: string[], o: { cwd?: string; env?: Record<string, string>; stdin?: Uint8Array; inherit?: boolean } = {}): Buffer {
  const r = Bun.spawnSync(argv, {
    cwd: o.cwd ?? ROOT,
    env: { ...process.env, ...o.env },
    stdin: o.stdin ?? "ignore",
    stdout: "pipe",
    stderr: o.inherit ? "inherit" : "pipe",
  });
  if (r.exitCode !== 0) throw new ReleaseError(`failed (exit ${r.exitCode}): ${argv.join(" ")}\n${r.stderr?.toString() ?? ""}`, "see the output above", 1);
  return r.stdout;
}

export const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
export const tarballName = (version: string, t: HostTarget) => `substrate-${version}-${t}.tar.gz`;
export const tarballUrl = (base: string, version: string, t: HostTarget) => `${base.replace(/\/+$/, "")}/download/v${version}/${tarballName(version, t)}`;

export interface ReleaseOptions {
  version?: string;
  commit?: string;
  out?: string;
  base?: string;
  targets?: HostTarget[];
  fast?: boolean;
}

export interface ReleaseResult {
  version: string;
  commit: string;
  out: string;
  files: Record<string, { sha256: string; size: number }>;
  seconds: number;
}

/** Render packaging/homebrew/substrate.rb.tmpl. A target missing from `sums` (a partial,
 *  test-only release) keeps its URL but gets a comment instead of a sha256 line. */
export function renderFormula(tmpl: string, o: { version: string; base: string; sums: Partial<Record<HostTarget, string>> }): string {
  const base = o.base.replace(/\/+$/, "");
  const homepage = base.replace(/\/releases$/, "");
  let out = tmpl.replaceAll("@VERSION@", o.version).replaceAll("@HOMEPAGE@", homepage);
  for (const t of HOSTS) {
    out = out.replaceAll(`@URL_${t}@`, tarballUrl(base, o.version, t));
    const sum = o.sums[t];
    out = sum
      ? out.replaceAll(`@SHA256_${t}@`, sum)
      : out.replace(new RegExp(`^(\\s*)sha256 "@SHA256_${t}@"$`, "m"), `$1# sha256: no ${t} build in this partial release`);
  }
  const left = out.match(/@[A-Z0-9_-]+@/);
  if (left) throw new ReleaseError(`formula template: unknown placeholder ${left[0]}`, "fix packaging/homebrew/substrate.rb.tmpl", 1);
  return out;
}

/** Deterministic .tar.gz of `dir` (a single top-level directory inside `parent`). */
function tarGz(parent: string, dir: string, mtime: number): Buffer {
  const tar = run(["tar", "--sort=name", `--mtime=@${mtime}`, "--owner=0", "--group=0", "--numeric-owner", "--format=gnu", "-C", parent, "-cf", "-", dir]);
  return run(["gzip", "-9", "-n", "-c"], { stdin: tar });
}

export async function release(o: ReleaseOptions = {}): Promise<ReleaseResult> {
  const t0 = performance.now();
  // The binaries report package.json's version (src/version.ts), so a release named anything
  // else would lie: VERSION is a check, not an override (docs/RELEASE.md).
  const version = o.version ?? pkg.version;
  if (!/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/.test(version)) throw new ReleaseError(`VERSION ${version} is not x.y.z`, "example: make release VERSION=0.1.0");
  if (version !== pkg.version)
    throw new ReleaseError(
      `VERSION ${version} differs from package.json's version ${pkg.version} (what the binaries report)`,
      `bump it first: npm version ${version} --no-git-tag-version, commit, then make release VERSION=${version}`,
    );
  const base = (o.base ?? process.env.SUBSTRATE_RELEASE_BASE ?? DEFAULT_BASE).replace(/\/+$/, "");
  if (!/^https?:\/\/[^\s"'\\]+$/.test(base)) throw new ReleaseError(`SUBSTRATE_RELEASE_BASE ${base} is not an http(s) URL`, `example: SUBSTRATE_RELEASE_BASE=${DEFAULT_BASE}`);
  const targets = [...new Set(o.targets?.length ? o.targets : HOSTS)].sort() as HostTarget[];
  for (const t of targets) if (!HOSTS.includes(t)) throw new ReleaseError(`unknown target ${t}`, `one of ${HOSTS.join(", ")}`);

  const ref = o.commit ?? "HEAD";
  const full = run(["git", "rev-parse", "--verify", `${ref}^{commit}`]).toString().trim();
  const short = full.slice(0, 12); // what scripts/build.ts would take from `git rev-parse --short=12`
  const epoch = Number(process.env.SOURCE_DATE_EPOCH ?? run(["git", "show", "-s", "--format=%ct", full]).toString().trim());
  if (ref === "HEAD" && run(["git", "status", "--porcelain", "--untracked-files=no"]).length > 0)
    log(`note: the work tree has uncommitted changes; the release is built from commit ${short} only`);

  const out = resolve(o.out ?? join(ROOT, "dist/release"));
  if (existsSync(out) && readdirSync(out).length > 0 && !existsSync(join(out, "SHA256SUMS")) && !existsSync(join(out, ".partial")))
    throw new ReleaseError(`${out} exists and does not look like a release directory`, "pass an empty or new --out directory");
  rmSync(out, { recursive: true, force: true });
  mkdirSync(join(out, "Formula"), { recursive: true });
  writeFileSync(join(out, ".partial"), ""); // removed when complete: a crash leaves a marked dir

  const tree = mkdtempSync(join(tmpdir(), "substrate-release-"));
  try {
    log(`version ${version}, commit ${short}, targets ${targets.join(" ")}${o.fast ? " (fast: zstd -6)" : ""}`);
    // `git archive` = exactly the commit; node_modules is the installed lockfile's.
    run(["tar", "-x", "-C", tree], { stdin: run(["git", "archive", "--format=tar", full]) });
    symlinkSync(join(ROOT, "node_modules"), join(tree, "node_modules"));
    const buildArgs = targets.length === HOSTS.length && !o.fast ? ["--all"] : [...targets.flatMap((t) => ["--target", t]), ...(o.fast ? [] : ["--release"])];
    const tb = performance.now();
    run([process.execPath, "scripts/build.ts", ...buildArgs], { cwd: tree, env: { SUBSTRATE_BUILD_COMMIT: short }, inherit: true });
    log(`build: ${((performance.now() - tb) / 1000).toFixed(1)} s`);

    // Completions come from the same source the binaries were built from.
    const completions: Record<string, Buffer> = {};
    for (const [shell, file] of [["bash", "substrate.bash"], ["zsh", "_substrate"], ["fish", "substrate.fish"]] as const)
      completions[file] = run([process.execPath, "src/main.ts", "completions", shell], { cwd: tree });

    const files: ReleaseResult["files"] = {};
    const sums: Partial<Record<HostTarget, string>> = {};
    const stage = join(tree, ".stage");
    for (const t of targets) {
      const dirName = `substrate-${version}-${t}`;
      const d = join(stage, dirName);
      mkdirSync(join(d, "completions"), { recursive: true });
      copyFileSync(join(tree, "dist", `substrate-${t}`), join(d, "substrate"));
      copyFileSync(join(tree, "LICENSE"), join(d, "LICENSE"));
      copyFileSync(join(tree, "README.md"), join(d, "README.md"));
      for (const [f, body] of Object.entries(completions)) writeFileSync(join(d, "completions", f), body);
      // Modes are part of the archive: set every one instead of inheriting the umask.
      for (const p of [d, join(d, "completions"), join(d, "substrate")]) chmodSync(p, 0o755);
      for (const p of ["LICENSE", "README.md", ...Object.keys(completions).map((f) => `completions/${f}`)]) chmodSync(join(d, p), 0o644);
      const tgz = tarGz(stage, dirName, epoch);
      const name = tarballName(version, t);
      writeFileSync(join(out, name), tgz);
      files[name] = { sha256: sha256(tgz), size: tgz.length };
      sums[t] = files[name].sha256;
      log(`${name}: ${(tgz.length / 1e6).toFixed(1)} MB (binary ${(statSync(join(d, "substrate")).size / 1e6).toFixed(1)} MB)`);
    }

    // The installer, with this release's base URL as its default.
    const installer = Buffer.from(
      readFileSync(join(tree, "install.sh"), "utf8").replace(/^SUBSTRATE_RELEASE_BASE_DEFAULT=.*$/m, `SUBSTRATE_RELEASE_BASE_DEFAULT='${base}'`),
    );
    writeFileSync(join(out, "install.sh"), installer, { mode: 0o755 });
    files["install.sh"] = { sha256: sha256(installer), size: installer.length };

    writeFileSync(
      join(out, "SHA256SUMS"),
      Object.keys(files)
        .sort()
        .map((f) => `${files[f]!.sha256}  ${f}\n`)
        .join(""),
    );
    const formula = renderFormula(readFileSync(join(tree, "packaging/homebrew/substrate.rb.tmpl"), "utf8"), { version, base, sums });
    writeFileSync(join(out, "Formula", "substrate.rb"), formula);
    if (targets.length < HOSTS.length) log(`partial release: Formula/substrate.rb has checksums for ${targets.join(", ")} only`);
    rmSync(join(out, ".partial"));
    const seconds = (performance.now() - t0) / 1000;
    log(`done in ${seconds.toFixed(1)} s → ${out}`);
    return { version, commit: full, out, files, seconds };
  } finally {
    rmSync(tree, { recursive: true, force: true });
  }
}

function parseArgs(argv: string[]): ReleaseOptions {
  const o: ReleaseOptions = { targets: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith("--")) throw new ReleaseError(`${a} needs a value`, "see the header of scripts/release.ts");
      return v;
    };
    if (a === "--version") o.version = val();
    else if (a === "--commit") o.commit = val();
    else if (a === "--out") o.out = val();
    else if (a === "--base") o.base = val();
    else if (a === "--target") o.targets!.push(val() as HostTarget);
    else if (a === "--native") o.targets!.push(native());
    else if (a === "--fast") o.fast = true;
    else throw new ReleaseError(`unknown argument ${a}`, "usage: bun scripts/release.ts [--version X] [--commit REF] [--out DIR] [--base URL] [--native | --target T …] [--fast]");
  }
  if (o.version === "") delete o.version; // `make release` without VERSION
  return o;
}

if (import.meta.main) {
  try {
    const r = await release(parseArgs(process.argv.slice(2)));
    for (const [f, v] of Object.entries(r.files).sort()) console.log(`${v.sha256}  ${(v.size / 1e6).toFixed(1).padStart(6)} MB  ${f}`);
  } catch (e) {
    if (e instanceof ReleaseError) {
      log(e.message);
      log(`hint: ${e.hint}`);
      process.exit(e.exitCode);
    }
    throw e;
  }
}
