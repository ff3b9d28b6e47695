/**
 * Pure parts of the issue-19 fixes, each against what Lima's source says (lima-vm/lima v2.2.0):
 * limactl lookup order, the version floor, the project-mount refusal (pkg/limayaml/validate.go),
 * the virtualization hint (pkg/instance/start.go logs `vz` on every start), pinned images
 * (templates/_images/ubuntu-24.04.yaml) and the guest DNS upstream chosen by provision.sh.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { findLimactl, LIMACTL_DIRS, MIN_LIMA_VERSION, versionAtLeast } from "../../../src/sys/limactl.ts";
import { checkProjectMount, imageUrls } from "../../../src/lima/profile.ts";
import { NO_VIRTUALIZATION, startHint, upgradeCommand } from "../../../src/lima/world.ts";

const ROOT = resolve(import.meta.dir, "../../..");
const scratch = mkdtempSync(join(tmpdir(), "lima-facts-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("limactl lookup (issue 19 item 5)", () => {
  test("PATH first, then beside substrate, /opt/homebrew/bin, /usr/local/bin, /opt/local/bin", () => {
    const have = new Set<string>();
    const isExec = (p: string) => have.has(p);
    const exe = "/Applications/Substrate/bin/substrate";
    expect(findLimactl({ PATH: "" }, exe, isExec)).toBeNull();
    have.add("/opt/local/bin/limactl");
    expect(findLimactl({ PATH: "" }, exe, isExec)).toEqual({ path: "/opt/local/bin/limactl", via: "/opt/local/bin" });
    have.add("/usr/local/bin/limactl");
    expect(findLimactl({ PATH: "" }, exe, isExec)?.path).toBe("/usr/local/bin/limactl");
    have.add("/opt/homebrew/bin/limactl");
    expect(findLimactl({ PATH: "" }, exe, isExec)?.path).toBe("/opt/homebrew/bin/limactl");
    have.add("/Applications/Substrate/bin/limactl");
    expect(findLimactl({ PATH: "" }, exe, isExec)).toEqual({ path: "/Applications/Substrate/bin/limactl", via: "beside substrate" });
    expect(LIMACTL_DIRS).toEqual(["/opt/homebrew/bin", "/usr/local/bin", "/opt/local/bin"]);
    // On PATH wins over everything.
    const bin = join(scratch, "bin");
    Bun.spawnSync(["mkdir", "-p", bin]);
    writeFileSync(join(bin, "limactl"), "#!/bin/sh\n", { mode: 0o755 });
    expect(findLimactl({ PATH: bin }, exe, isExec)).toEqual({ path: join(bin, "limactl"), via: "PATH" });
  });
});

describe("version floor (item 8)", () => {
  test("2.0.0 is the minimum; pre-release suffixes count as the release", () => {
    expect(MIN_LIMA_VERSION).toBe("2.0.0");
    for (const ok of ["2.0.0", "2.0.1", "2.2.0-153-g183a60d7", "10.0.0"]) expect(versionAtLeast(ok, MIN_LIMA_VERSION)).toBe(true);
    for (const old of ["1.0.3", "1.1.0", "1.9.99", "0.23.2"]) expect(versionAtLeast(old, MIN_LIMA_VERSION)).toBe(false);
    expect(upgradeCommand("/opt/homebrew/bin/limactl")).toBe("brew upgrade lima");
    expect(upgradeCommand("/opt/local/bin/limactl")).toContain("port upgrade lima");
  });
  test("both profiles declare minimumLimaVersion", () => {
    for (const f of ["substrate.yaml", "substrate-dev.yaml"])
      expect((Bun.YAML.parse(readFileSync(join(ROOT, "guest-assets/lima", f), "utf8")) as { minimumLimaVersion: string }).minimumLimaVersion).toBe(MIN_LIMA_VERSION);
  });
});

describe("project mounts Lima would refuse (item 4)", () => {
  test("/, /tmp, /opt, /usr, /var, /etc, /home, the guest home and ancestors of $HOME are refused; $HOME is not mounted; a project is", () => {
    for (const p of ["/", "/tmp", "/opt", "/usr", "/var", "/etc", "/home", "/bin", "/sbin", "/dev", "/home/alice.guest", "/home/alice.linux"]) {
      const c = checkProjectMount(p, "/Users/alice", "alice");
      expect({ p, mount: c.mount, refused: !!c.error }).toEqual({ p, mount: null, refused: true });
      expect(c.hint).toContain("project directory");
    }
    expect(checkProjectMount("/Users", "/Users/alice", "alice").error).toContain("contains your home directory");
    expect(checkProjectMount("/Users/alice", "/Users/alice", "alice")).toEqual({ mount: null });
    expect(checkProjectMount("/Users/alice/src/app", "/Users/alice", "alice")).toEqual({ mount: "/Users/alice/src/app" });
    expect(checkProjectMount("/tmp/x", "/Users/alice", "alice")).toEqual({ mount: "/tmp/x" }); // Lima checks the exact path only
    expect(checkProjectMount(null)).toEqual({ mount: null });
  });
});

describe("the virtualization hint (item 7)", () => {
  const always = "time=\"2026-12-04T10:00:00Z\" level=info msg=\"Starting the instance `substrate` with internal VM driver `vz`\"\n";
  test("Lima's own start line alone never triggers it", () => {
    for (const err of ["failed to download the image: connection reset by peer", "did not receive an event with the `running` status", "degraded, status={...}", "no space left on device"]) {
      expect(NO_VIRTUALIZATION.test(always + err)).toBe(false);
      expect(startHint(always + err, "substrate")).not.toContain("virtualization");
    }
    expect(startHint(always + "failed to download the image: connection reset by peer", "substrate")).toContain("download");
  });
  test("real virtualization errors do", () => {
    for (const err of ["VZ driver requires macOS 13 or higher to run", "Error Domain=VZErrorDomain Code=1 Description=\"Virtualization is not available on this hardware.\"", "nested virtualization is not supported on this device"])
      expect(startHint(always + err, "substrate")).toContain("enable virtualization");
  });
});

describe("pinned Ubuntu images (item 9)", () => {
  test("per arch: a dated release with a sha256 digest first, the release/ URL as the fallback", () => {
    for (const f of ["substrate.yaml", "substrate-dev.yaml"]) {
      const y = Bun.YAML.parse(readFileSync(join(ROOT, "guest-assets/lima", f), "utf8")) as { images: { location: string; arch: string; digest?: string }[] };
      for (const arch of ["aarch64", "x86_64"]) {
        const imgs = y.images.filter((i) => i.arch === arch);
        expect(imgs.length).toBe(2);
        expect(imgs[0]!.location).toMatch(/\/releases\/noble\/release-\d{8}\/ubuntu-24\.04-server-cloudimg-(arm64|amd64)\.img$/);
        expect(imgs[0]!.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
        expect(imgs[1]!.location).toMatch(/\/releases\/noble\/release\/ubuntu-24\.04-server-cloudimg-(arm64|amd64)\.img$/);
        expect(imgs[1]!.digest).toBeUndefined();
      }
      expect(imageUrls(readFileSync(join(ROOT, "guest-assets/lima", f), "utf8"))).toHaveLength(4);
    }
  });
});

describe("guest DNS upstream (item 10): the guest's own (Lima's host DNS), unless named", () => {
  const run = (env: Record<string, string>, args: string[] = []) =>
    Bun.spawnSync(["sh", join(ROOT, "guest-assets/provision.sh"), "--print-dns-upstream", ...args], { env: { PATH: "/usr/bin:/bin", ...env }, stdout: "pipe", stderr: "pipe" }).stdout.toString().trim();
  test("systemd-resolved's upstream list, never its 127.0.0.53 stub; remembered; an explicit one wins", () => {
    const resolved = join(scratch, "resolv.conf");
    const saved = join(scratch, "dns-upstream");
    writeFileSync(resolved, "# This is /run/systemd/resolve/resolv.conf\nnameserver 192.168.5.3\nnameserver 127.0.0.53\nnameserver 192.168.5.3\nsearch .\n");
    expect(run({ SUBSTRATE_RESOLVED_CONF: resolved, SUBSTRATE_DNS_UPSTREAM_FILE: saved })).toBe("192.168.5.3");
    // resolved disabled (after the pin): the remembered upstream.
    writeFileSync(saved, "# The guest upstream resolver(s)\n10.0.0.2\n");
    expect(run({ SUBSTRATE_RESOLVED_CONF: join(scratch, "absent"), SUBSTRATE_DNS_UPSTREAM_FILE: saved })).toBe("10.0.0.2");
    expect(run({ SUBSTRATE_RESOLVED_CONF: resolved, SUBSTRATE_DNS_UPSTREAM_FILE: saved }, ["--dns-upstream", "9.9.9.9"])).toBe("9.9.9.9");
    // No public resolver is pinned any more.
    expect(readFileSync(join(ROOT, "guest-assets/provision.sh"), "utf8")).not.toContain("1.1.1.1");
  });
});
