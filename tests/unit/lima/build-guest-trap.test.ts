/**
 * tests/e2e/harness/build-guest.sh's EXIT trap (issue 18 item 1a): run on its own under the
 * script's `set -euo pipefail`, it must keep the script's exit status (0 after a successful
 * build, the error's code after a failure), unmount what debootstrap left under the rootfs and
 * remove the work dir. The old trap ended on a `grep` that matched nothing, so a successful
 * build exited 1 on every fresh machine; this test fails on it.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const SCRIPT = resolve(import.meta.dir, "../../e2e/harness/build-guest.sh");
const scratch = mkdtempSync(join(tmpdir(), "build-guest-trap-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The script's cleanup() function, exactly as written there. */
function cleanupFn(): string {
  const text = readFileSync(SCRIPT, "utf8");
  const m = /^cleanup\(\) \{\n[\s\S]*?^\}\n/m.exec(text);
  if (!m) throw new Error("build-guest.sh has no cleanup() function");
  return m[0];
}

function runWithTrap(body: string, work: string): { code: number; stderr: string } {
  const script = `set -euo pipefail\nwork=${JSON.stringify(work)}\nroot="$work/rootfs"\n${cleanupFn()}trap cleanup EXIT\n${body}\n`;
  const r = Bun.spawnSync(["bash", "-c", script], { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, stderr: r.stderr.toString() };
}

const isMounted = (p: string) => readFileSync("/proc/self/mountinfo", "utf8").split("\n").some((l) => l.split(" ")[4] === p);

describe("build-guest.sh EXIT trap", () => {
  test("a successful run (no mounts left) exits 0 and removes the work dir", () => {
    const work = join(scratch, "ok");
    mkdirSync(join(work, "rootfs/etc"), { recursive: true });
    const r = runWithTrap('echo "$work/image.tar.zst"; exit 0', work);
    expect(r).toEqual({ code: 0, stderr: "" });
    expect(existsSync(work)).toBe(false);
  });

  test("falling off the end of the script (status 0) also exits 0", () => {
    const work = join(scratch, "end");
    mkdirSync(join(work, "rootfs"), { recursive: true });
    expect(runWithTrap("true", work).code).toBe(0);
    expect(existsSync(work)).toBe(false);
  });

  test("a failure keeps its own exit code", () => {
    const work = join(scratch, "fail");
    mkdirSync(join(work, "rootfs"), { recursive: true });
    expect(runWithTrap("exit 3", work).code).toBe(3);
    expect(existsSync(work)).toBe(false);
  });

  test.skipIf(process.getuid?.() !== 0)("mounts debootstrap left under the rootfs are unmounted (nested first), a mount outside it is not touched", () => {
    const work = join(scratch, "mounted");
    const root = join(work, "rootfs");
    const sibling = join(scratch, "outside");
    mkdirSync(join(root, "proc"), { recursive: true });
    mkdirSync(sibling, { recursive: true });
    const mount = (args: string[]) => expect(Bun.spawnSync(["mount", ...args]).exitCode).toBe(0);
    mount(["-t", "tmpfs", "tmpfs", join(root, "proc")]);
    mkdirSync(join(root, "proc/inner"));
    mount(["-t", "tmpfs", "tmpfs", join(root, "proc/inner")]);
    mount(["-t", "tmpfs", "tmpfs", sibling]);
    try {
      const r = runWithTrap("exit 0", work);
      expect(r.code).toBe(0);
      expect(isMounted(join(root, "proc"))).toBe(false);
      expect(isMounted(join(root, "proc/inner"))).toBe(false);
      expect(existsSync(work)).toBe(false);
      expect(isMounted(sibling)).toBe(true);
    } finally {
      for (const p of [join(root, "proc/inner"), join(root, "proc"), sibling]) if (isMounted(p)) Bun.spawnSync(["umount", "-l", p]);
    }
  });
});
