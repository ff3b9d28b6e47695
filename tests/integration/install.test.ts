/**
 * install.sh for real, under dash and bash, against a loopback HTTP server serving a real
 * release (scripts/release.ts, native target): install, run the binary, reinstall (no-op),
 * pinned and unknown versions, corrupted tarball refused, foreign binary, uninstall (only what
 * it installed), non-root default prefix, and unsupported platforms through a fake `uname`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, symlinkSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { buildNativeRelease, headCommit, NATIVE, readSums, ROOT, run, serveRelease, type ReleaseServer } from "./release-helpers.ts";

const V = pkg.version;
const TARBALL = `substrate-${V}-${NATIVE}.tar.gz`;
const SYS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const tmp = mkdtempSync(join(tmpdir(), "substrate-install-test-"));
chmodSync(tmp, 0o755); // the non-root test user must reach its home below it
const releaseDir = join(tmp, "release");
const corruptDir = join(tmp, "release-corrupt");
let server: ReleaseServer;
let commit = "";

beforeAll(async () => {
  commit = await headCommit();
  await buildNativeRelease(releaseDir, commit);
  // Same SHA256SUMS, one flipped byte in the middle of the tarball.
  mkdirSync(corruptDir);
  for (const f of readdirSync(releaseDir)) if (f !== "Formula") copyFileSync(join(releaseDir, f), join(corruptDir, f));
  const fd = openSync(join(corruptDir, TARBALL), "r+");
  const at = Math.floor(statSync(join(corruptDir, TARBALL)).size / 2);
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, at);
  b[0] = b[0]! ^ 0xff;
  writeSync(fd, b, 0, 1, at);
  closeSync(fd);
  server = serveRelease(releaseDir);
}, 900_000);

afterAll(() => {
  server?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

const tarballRequests = () => server.requests.filter((p) => p.endsWith(".tar.gz")).length;

/** All files under dir, relative, sorted (directories with a trailing /). */
function tree(dir: string, rel = ""): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(join(dir, rel), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? [`${rel}${e.name}/`, ...tree(dir, `${rel}${e.name}/`)] : [`${rel}${e.name}`]))
    .sort();
}

for (const shell of ["dash", "bash"] as const) {
  describe(`install.sh under ${shell}`, () => {
    const prefix = join(tmp, `prefix-${shell}`);
    const home = join(tmp, `home-${shell}`);
    mkdirSync(home, { recursive: true });
    const env = (extra: Record<string, string> = {}) => ({ PATH: SYS_PATH, HOME: home, SUBSTRATE_RELEASE_BASE: server.base, ...extra });
    const install = (args: string[] = [], extra: Record<string, string> = {}) => run([shell, join(ROOT, "install.sh"), "--prefix", prefix, ...args], { env: env(extra) });

    test("installs the release: binary runs, completions + manifest written, PATH line and next step printed", async () => {
      server.dir = releaseDir;
      const before = tarballRequests();
      const r = await install();
      expect(r.stderr).toContain(`installed substrate ${V}+${commit.slice(0, 12)}.`);
      expect(r.code).toBe(0);
      expect(tarballRequests()).toBe(before + 1);
      expect(server.requests).toContain("/latest/download/SHA256SUMS");
      expect(r.stderr).toContain(`export PATH="${prefix}/bin:$PATH"`);
      expect(r.stderr).toContain("next: substrate world doctor");
      const v = await run([join(prefix, "bin/substrate"), "--version"]);
      expect(v.code).toBe(0);
      expect(v.stdout).toStartWith(`substrate ${V}+${commit.slice(0, 12)}.`);
      expect(tree(prefix)).toEqual([
        "bin/",
        "bin/substrate",
        "share/",
        "share/bash-completion/",
        "share/bash-completion/completions/",
        "share/bash-completion/completions/substrate",
        "share/doc/",
        "share/doc/substrate/",
        "share/doc/substrate/LICENSE",
        "share/doc/substrate/README.md",
        "share/fish/",
        "share/fish/vendor_completions.d/",
        "share/fish/vendor_completions.d/substrate.fish",
        "share/substrate/",
        "share/substrate/install-manifest",
        "share/substrate/install-manifest.dirs",
        "share/zsh/",
        "share/zsh/site-functions/",
        "share/zsh/site-functions/_substrate",
      ]);
      expect(statSync(join(prefix, "bin/substrate")).mode & 0o777).toBe(0o755);
      const manifest = readFileSync(join(prefix, "share/substrate/install-manifest"), "utf8");
      expect(manifest).toContain(`release ${V} ${readSums(releaseDir)[TARBALL]}`);
    });

    test("reinstalling the same release is a no-op (no download, files untouched)", async () => {
      const bin = join(prefix, "bin/substrate");
      const ino = statSync(bin).ino;
      const before = tarballRequests();
      const r = await install();
      expect(r.code).toBe(0);
      expect(r.stderr).toContain(`substrate ${V} is already installed in ${prefix}/bin (nothing to do)`);
      expect(tarballRequests()).toBe(before);
      expect(statSync(bin).ino).toBe(ino);
      // --version pins the same release: still a no-op, fetched from the versioned URL.
      const pinned = await install(["--version", `v${V}`]);
      expect(pinned.code).toBe(0);
      expect(pinned.stderr).toContain("nothing to do");
      expect(server.requests).toContain(`/download/v${V}/SHA256SUMS`);
    });

    test("a changed installed file makes the next run reinstall", async () => {
      const f = join(prefix, "share/doc/substrate/README.md");
      writeFileSync(f, "edited\n");
      const before = tarballRequests();
      const r = await install();
      expect(r.code).toBe(0);
      expect(tarballRequests()).toBe(before + 1);
      expect(readFileSync(f, "utf8")).toBe((await run(["git", "show", `${commit}:README.md`])).stdout);
    });

    test("an unknown version exits 3 with a hint", async () => {
      const r = await install(["--version", "9.9.9"]);
      expect(r.code).toBe(3);
      expect(r.stderr).toContain(`could not download ${server.base}/download/v9.9.9/SHA256SUMS`);
      expect(r.stderr).toContain("hint:");
      const bad = await install(["--version", "latest-ish"]);
      expect(bad.code).toBe(2);
    });

    test("a corrupted tarball is refused and changes nothing", async () => {
      server.dir = corruptDir;
      try {
        const fresh = join(tmp, `fresh-${shell}`);
        const r = await run([shell, join(ROOT, "install.sh"), "--prefix", fresh], { env: env() });
        expect(r.code).toBe(1);
        expect(r.stderr).toContain(`checksum mismatch for ${TARBALL}: expected ${readSums(releaseDir)[TARBALL]}, got `);
        expect(r.stderr).toContain("refusing to install");
        expect(existsSync(fresh)).toBe(false);
        // Over an existing install whose files were changed (so it is not a no-op): refused, left as is.
        const doc = join(prefix, "share/doc/substrate/LICENSE");
        writeFileSync(doc, "tampered\n");
        const manifest = readFileSync(join(prefix, "share/substrate/install-manifest"), "utf8");
        const r2 = await install();
        expect(r2.code).toBe(1);
        expect(r2.stderr).toContain("checksum mismatch");
        expect(readFileSync(doc, "utf8")).toBe("tampered\n");
        expect(readFileSync(join(prefix, "share/substrate/install-manifest"), "utf8")).toBe(manifest);
      } finally {
        server.dir = releaseDir;
      }
      expect((await install()).code).toBe(0); // repaired from the good release
    });

    test("a substrate binary it did not install is not overwritten without --force", async () => {
      const other = join(tmp, `other-${shell}`);
      mkdirSync(join(other, "bin"), { recursive: true });
      writeFileSync(join(other, "bin/substrate"), "#!/bin/sh\necho mine\n", { mode: 0o755 });
      const r = await run([shell, join(ROOT, "install.sh"), "--prefix", other], { env: env() });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`${other}/bin/substrate exists and was not installed by this script`);
      expect(readFileSync(join(other, "bin/substrate"), "utf8")).toContain("echo mine");
      // --force; with the bin dir already on PATH there is no PATH advice, only the next step.
      const f = await run([shell, join(ROOT, "install.sh"), "--prefix", other, "--force"], { env: env({ PATH: `${other}/bin:${SYS_PATH}` }) });
      expect(f.code).toBe(0);
      expect(f.stderr).not.toContain("export PATH=");
      expect(f.stderr).toContain("next: substrate world doctor");
      expect((await run([join(other, "bin/substrate"), "--version"])).stdout).toStartWith(`substrate ${V}`);
      rmSync(other, { recursive: true, force: true });
    });

    test("--uninstall removes exactly what it installed", async () => {
      // Someone else's files in the same directories must survive.
      writeFileSync(join(prefix, "bin/other-tool"), "keep\n");
      writeFileSync(join(prefix, "share/zsh/site-functions/_other"), "keep\n");
      // A file edited since the install is no longer what it installed: kept.
      writeFileSync(join(prefix, "share/doc/substrate/README.md"), "my notes\n");
      const r = await run([shell, join(ROOT, "install.sh"), "--uninstall", "--prefix", prefix], { env: env() });
      expect(r.code).toBe(0);
      expect(r.stderr).toContain(`kept ${prefix}/share/doc/substrate/README.md (changed since it was installed)`);
      expect(r.stderr).toContain(`removed substrate from ${prefix}`);
      expect(tree(prefix)).toEqual([
        "bin/",
        "bin/other-tool",
        "share/",
        "share/doc/",
        "share/doc/substrate/",
        "share/doc/substrate/README.md",
        "share/zsh/",
        "share/zsh/site-functions/",
        "share/zsh/site-functions/_other",
      ]);
      const again = await run([shell, join(ROOT, "install.sh"), "--uninstall", "--prefix", prefix], { env: env() });
      expect(again.code).toBe(0);
      expect(again.stderr).toContain("nothing to uninstall");
      rmSync(prefix, { recursive: true, force: true });
    });

    test("unsupported platforms exit 4 with a clear message (fake uname on PATH)", async () => {
      const shim = join(tmp, `shim-${shell}`);
      mkdirSync(shim, { recursive: true });
      const cases: [string, string, string][] = [
        ["MINGW64_NT-10.0-19045", "x86_64", "Windows is not supported"],
        ["Windows_NT", "x86_64", "Windows is not supported"],
        ["Linux", "i686", "32-bit systems are not supported (i686)"],
        ["Linux", "armv7l", "32-bit systems are not supported (armv7l)"],
        ["Linux", "riscv64", "unsupported CPU architecture: riscv64"],
        ["SunOS", "i86pc", "unsupported operating system: SunOS"],
        // A supported platform this (native-only) release has no tarball for.
        ["Darwin", "arm64", `the release has no build for darwin-arm64`],
      ];
      for (const [s, m, msg] of cases) {
        writeFileSync(join(shim, "uname"), `#!/bin/sh\ncase "$1" in -s) echo '${s}' ;; -m) echo '${m}' ;; *) echo '${s}' ;; esac\n`);
        chmodSync(join(shim, "uname"), 0o755);
        const p = join(tmp, `never-${shell}`);
        const r = await run([shell, join(ROOT, "install.sh"), "--prefix", p], { env: env({ PATH: `${shim}:${SYS_PATH}` }) });
        expect(`${s} ${m}: ${r.code} ${r.stderr}`).toContain(msg);
        expect(r.code).toBe(4);
        expect(existsSync(p)).toBe(false);
      }
      rmSync(shim, { recursive: true, force: true });
    });

    test("without curl it downloads with wget; with neither it exits 3", async () => {
      // A PATH holding every system program except the hidden ones (links, not copies).
      const pathWithout = (hide: string[]) => {
        const d = join(tmp, `path-${shell}-${hide.join("-")}`);
        mkdirSync(d, { recursive: true });
        for (const sys of ["/usr/sbin", "/usr/bin"])
          for (const f of readdirSync(sys)) if (!hide.includes(f) && !existsSync(join(d, f))) symlinkSync(join(sys, f), join(d, f));
        return d;
      };
      const noCurl = pathWithout(["curl"]);
      const p = join(tmp, `wget-${shell}`);
      const before = tarballRequests();
      const r = await run([shell, join(ROOT, "install.sh"), "--prefix", p], { env: env({ PATH: noCurl }) });
      expect(r.stderr).toContain(`installed substrate ${V}`);
      expect(r.code).toBe(0);
      expect(tarballRequests()).toBe(before + 1);
      const none = await run([shell, join(ROOT, "install.sh"), "--prefix", join(tmp, `none-${shell}`)], { env: env({ PATH: pathWithout(["curl", "wget"]) }) });
      expect(none.code).toBe(3);
      expect(none.stderr).toContain("neither curl nor wget found");
      expect(existsSync(join(tmp, `none-${shell}`))).toBe(false);
      rmSync(p, { recursive: true, force: true });
    });

    test("as a non-root user the default is ~/.substrate/bin", async () => {
      const user = join(tmp, `user-${shell}`);
      mkdirSync(user);
      copyFileSync(join(ROOT, "install.sh"), join(user, "install.sh"));
      chownSync(user, 65534, 65534);
      chownSync(join(user, "install.sh"), 65534, 65534);
      const r = await run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", shell, join(user, "install.sh")], { env: env({ HOME: user }) });
      expect(r.stderr).toContain(`installed substrate ${V}`);
      expect(r.code).toBe(0);
      expect(r.stderr).toContain(`export PATH="${user}/.substrate/bin:$PATH"`);
      expect(statSync(join(user, ".substrate/bin/substrate")).uid).toBe(65534);
      const u = await run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", shell, join(user, "install.sh"), "--uninstall"], { env: env({ HOME: user }) });
      expect(u.code).toBe(0);
      expect(tree(user)).toEqual(["install.sh"]);
      rmSync(user, { recursive: true, force: true });
    });
  });
}
