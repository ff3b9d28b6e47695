/**
 * `make release` for real, on the native target only (a full six-binary release takes many
 * minutes here): two runs from one commit, each building from scratch in its own
 * `git archive` tree, must give byte-identical tarballs — which also proves that
 * `bun build --compile` is deterministic for identical inputs.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { HOSTS, renderFormula } from "../../scripts/release.ts";
import { BUN, buildNativeRelease, headCommit, NATIVE, readSums, ROOT, run } from "./release-helpers.ts";

const BASE = "https://releases.example.test/substrate/releases"; // never contacted
const V = pkg.version;
const tarball = `substrate-${V}-${NATIVE}.tar.gz`;

describe("release (native, --fast)", () => {
  const tmp = mkdtempSync(join(tmpdir(), "substrate-release-test-"));
  const a = join(tmp, "a");
  const b = join(tmp, "b");
  let commit = "";

  beforeAll(async () => {
    commit = await headCommit();
    await buildNativeRelease(a, commit, ["--base", BASE]);
    await buildNativeRelease(b, commit, ["--base", BASE]);
  }, 900_000);
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  test("two runs from the same commit give the same checksums", () => {
    const sa = readSums(a);
    expect(Object.keys(sa).sort()).toEqual(["install.sh", tarball]);
    expect(readFileSync(join(b, "SHA256SUMS"), "utf8")).toBe(readFileSync(join(a, "SHA256SUMS"), "utf8"));
    expect(readFileSync(join(b, "Formula/substrate.rb"), "utf8")).toBe(readFileSync(join(a, "Formula/substrate.rb"), "utf8"));
    // SHA256SUMS tells the truth about the files next to it.
    expect(new Bun.CryptoHasher("sha256").update(readFileSync(join(a, tarball))).digest("hex")).toBe(sa[tarball]!);
  });

  test("tarball: one top directory, owner 0/0, fixed mtime, explicit modes, sorted", async () => {
    const r = await run(["tar", "--numeric-owner", "-tvzf", join(a, tarball)]);
    expect(r.code).toBe(0);
    const rows = r.stdout.trim().split("\n").map((l) => l.split(/\s+/));
    const names = rows.map((c) => c[5]!);
    const top = `substrate-${V}-${NATIVE}/`;
    expect(names).toEqual([
      top,
      `${top}LICENSE`,
      `${top}README.md`,
      `${top}completions/`,
      `${top}completions/_substrate`,
      `${top}completions/substrate.bash`,
      `${top}completions/substrate.fish`,
      `${top}substrate`,
    ]);
    for (const c of rows) expect(c[1]).toBe("0/0");
    expect(new Set(rows.map((c) => `${c[3]} ${c[4]}`)).size).toBe(1); // one mtime for all
    const mode = Object.fromEntries(rows.map((c) => [c[5]!, c[0]!]));
    expect(mode[`${top}substrate`]).toBe("-rwxr-xr-x");
    expect(mode[`${top}LICENSE`]).toBe("-rw-r--r--");
    expect(mode[`${top}completions/`]).toBe("drwxr-xr-x");
    // gzip -n: no name, no timestamp in the gzip header (bytes 4..7 are MTIME).
    const gz = readFileSync(join(a, tarball));
    expect(gz.readUInt32LE(4)).toBe(0);
    expect(gz[3]! & 0x08).toBe(0); // FNAME flag unset
  });

  test("the packed binary runs and reports the release's version and commit", async () => {
    const x = join(tmp, "x");
    await run(["mkdir", "-p", x]);
    expect((await run(["tar", "-xzf", join(a, tarball), "-C", x])).code).toBe(0);
    const r = await run([join(x, `substrate-${V}-${NATIVE}`, "substrate"), "--version", "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ version: V, commit: commit.slice(0, 12), target: NATIVE });
    const c = await run([join(x, `substrate-${V}-${NATIVE}`, "substrate"), "completions", "bash"]);
    expect(c.stdout).toBe(readFileSync(join(x, `substrate-${V}-${NATIVE}`, "completions/substrate.bash"), "utf8"));
  });

  test("formula: ruby -c, the native checksum, the base URL, depends_on lima on macOS", async () => {
    const f = join(a, "Formula/substrate.rb");
    const r = await run(["ruby", "-c", f]);
    expect(r.stdout + r.stderr).toContain("Syntax OK");
    const text = readFileSync(f, "utf8");
    expect(text).toContain(`url "${BASE}/download/v${V}/${tarball}"\n      sha256 "${readSums(a)[tarball]}"`);
    expect(text).toContain(`version "${V}"`);
    expect(text).toContain('homepage "https://releases.example.test/substrate"');
    expect(text).toMatch(/on_macos do[\s\S]*depends_on "lima"[\s\S]*on_linux do/);
    expect(text).toContain("# sha256: no darwin-arm64 build in this partial release");
    expect(text).not.toMatch(/@[A-Z0-9_-]+@/);
  });

  test("install.sh in the release defaults to the release's base URL", () => {
    const s = readFileSync(join(a, "install.sh"), "utf8");
    expect(s).toContain(`SUBSTRATE_RELEASE_BASE_DEFAULT='${BASE}'`);
    expect(s.replace(/^SUBSTRATE_RELEASE_BASE_DEFAULT=.*$/m, "")).toBe(readFileSync(join(ROOT, "install.sh"), "utf8").replace(/^SUBSTRATE_RELEASE_BASE_DEFAULT=.*$/m, ""));
  });
});

test("renderFormula with all four targets: valid Ruby, every url + sha256, no placeholder left", async () => {
  const sums = Object.fromEntries(HOSTS.map((t, i) => [t, String(i + 1).repeat(64)]));
  const text = renderFormula(readFileSync(join(ROOT, "packaging/homebrew/substrate.rb.tmpl"), "utf8"), { version: "1.2.3", base: "https://example.test/r/releases/", sums });
  for (const [i, t] of HOSTS.entries()) expect(text).toContain(`url "https://example.test/r/releases/download/v1.2.3/substrate-1.2.3-${t}.tar.gz"\n      sha256 "${String(i + 1).repeat(64)}"`);
  expect(text).not.toContain("partial release");
  expect(text).toContain('test do');
  expect(text).toContain('substrate host doctor --json');
  expect(text).toContain("substrate world warm");
  const dir = mkdtempSync(join(tmpdir(), "substrate-formula-"));
  try {
    writeFileSync(join(dir, "substrate.rb"), text);
    const r = await run(["ruby", "-c", join(dir, "substrate.rb")]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Syntax OK");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("VERSION must match package.json's version (exit 2, with the next step)", async () => {
  const r = await run([BUN, "scripts/release.ts", "--version", "9.9.9", "--native", "--out", join(tmpdir(), "substrate-never-written")]);
  expect(r.code).toBe(2);
  expect(r.stderr).toContain(`VERSION 9.9.9 differs from package.json's version ${V}`);
  expect(r.stderr).toContain("hint: bump it first: npm version 9.9.9 --no-git-tag-version");
  const bad = await run([BUN, "scripts/release.ts", "--version", "banana"]);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain("is not x.y.z");
});

test("make release passes VERSION through", async () => {
  const r = await run(["make", "-n", "release", "VERSION=1.2.3"]);
  expect(r.stdout).toContain("scripts/release.ts --version 1.2.3");
  const none = await run(["make", "-n", "release"]);
  expect(none.stdout).not.toContain("--version");
});
