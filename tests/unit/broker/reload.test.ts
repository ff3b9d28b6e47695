/**
 * Hot reload (spec "Policy Hot-Reload"): an edit applies to the next command; a broken edit
 * keeps the last good policy with one warning; reloads under concurrent evaluation never
 * expose a torn policy (each evaluation sees one whole version).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { openSync, renameSync, writeFileSync, writeSync, closeSync, ftruncateSync } from "node:fs";
import { join } from "node:path";
import { evaluate, PolicyBroker, type ReloadResult } from "../../../src/broker/index.ts";
import { tempHome, type TempHome } from "./_helpers.ts";

let t: TempHome;
let broker: PolicyBroker | undefined;
afterEach(() => {
  broker?.close();
  broker = undefined;
  t?.cleanup();
});

/** Version n denies `echo v<n>` only; the name comes last and quoted, so a truncated write is never valid. */
const version = (n: number): string =>
  `examples:\n  deny: ['echo v${n}']\n  allow: ['echo v${n + 1000}']\nid: default\nmode: enforce\ncommands:\n  denied: ['echo v${n}']\nname: "v${n}-end"\n`;

function atomicWrite(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

function nextReload(b: { waiters: ((r: ReloadResult) => void)[] }): Promise<ReloadResult> {
  return new Promise((resolve) => b.waiters.push(resolve));
}

function makeBroker(warnings: string[] = []) {
  const hooks = { waiters: [] as ((r: ReloadResult) => void)[] };
  broker = new PolicyBroker({
    home: t.home,
    warn: (m) => warnings.push(m),
    debounceMs: 20,
    onReload: (r) => hooks.waiters.splice(0).forEach((w) => w(r)),
  }).watch();
  return { b: broker, hooks };
}

describe("PolicyBroker hot reload", () => {
  test("spec acceptance: edit policy → the next command uses the new rules (no restart)", async () => {
    t = tempHome();
    const file = t.write("default.yaml", version(1));
    const { b, hooks } = makeBroker();
    const cwd = t.home;
    expect(evaluate("echo v1", cwd, b.current(cwd).policy).kind).toBe("deny");
    expect(evaluate("echo v2", cwd, b.current(cwd).policy).kind).toBe("allow");
    const done = nextReload(hooks);
    atomicWrite(file, version(2));
    expect((await done).reloaded).toEqual([file]);
    expect(evaluate("echo v1", cwd, b.current(cwd).policy).kind).toBe("allow");
    expect(evaluate("echo v2", cwd, b.current(cwd).policy).kind).toBe("deny");
  });

  test("a broken edit keeps the last good policy and warns once; a fix applies", async () => {
    t = tempHome();
    const file = t.write("default.yaml", version(1));
    const warnings: string[] = [];
    const { b, hooks } = makeBroker(warnings);
    const cwd = t.home;
    const before = b.current(cwd);
    let done = nextReload(hooks);
    atomicWrite(file, "id: default\nname: x\nmode: enforce\ncommands:\n  denied: ['a; b']\n");
    expect((await done).failed.length).toBe(1);
    expect(b.current(cwd)).toBe(before);
    expect(evaluate("echo v1", cwd, b.current(cwd).policy).kind).toBe("deny");
    done = nextReload(hooks);
    writeFileSync(file, "id: default\nname: x\nmode: enforce\ncommands:\n  denied: ['a; b']\n"); // same broken save again
    await done;
    expect(warnings.length).toBe(1);
    expect(warnings[0]).toContain("commands.denied[0]");
    expect(warnings[0]).toContain('keeping the last good policy "default"');
    // a failing self-test is a broken edit too: never half-applied
    done = nextReload(hooks);
    atomicWrite(file, version(3).replace("denied: ['echo v3']", "denied: ['echo nothing']"));
    expect((await done).failed[0].issues[0].path).toBe("examples.deny[0]");
    expect(b.current(cwd)).toBe(before);
    done = nextReload(hooks);
    atomicWrite(file, version(4));
    await done;
    expect(evaluate("echo v4", cwd, b.current(cwd).policy).kind).toBe("deny");
  });

  test("policy reload stamp and new files trigger a reload (builtin → file)", async () => {
    t = tempHome();
    const { b, hooks } = makeBroker();
    const cwd = t.home;
    expect(b.current(cwd).source.file).toBe("builtin:default");
    const done = nextReload(hooks);
    t.write("default.yaml", version(7));
    await done;
    expect(b.current(cwd).source.file).toBe(join(t.policies, "default.yaml"));
  });

  test("spec acceptance: atomic reloads under concurrent evaluation, no torn reads", async () => {
    t = tempHome();
    const file = t.write("default.yaml", version(0));
    const warnings: string[] = [];
    const { b } = makeBroker(warnings);
    const cwd = t.home;
    let stop = false;
    const seen = new Set<string>();
    let evaluations = 0;
    const evaluator = async (): Promise<void> => {
      while (!stop) {
        const snap = b.current(cwd).policy; // one reference per command, as the CLI/API do
        const n = Number(/^v(\d+)-end$/.exec(snap.doc.name)![1]);
        seen.add(snap.doc.name);
        // the whole snapshot must be one version: denies its own echo and no other
        for (const k of [n - 1, n, n + 1]) {
          const d = evaluate(`echo v${k}`, cwd, snap);
          if ((d.kind === "deny") !== (k === n)) throw new Error(`torn policy: ${snap.doc.name} on echo v${k}: ${d.kind}`);
        }
        expect(Object.isFrozen(snap.doc.commands.denied)).toBe(true);
        evaluations++;
        await new Promise((r) => setImmediate(r));
      }
    };
    const runners = [evaluator(), evaluator(), evaluator(), evaluator()];
    for (let n = 1; n <= 30; n++) {
      if (n % 3 === 0) {
        // a non-atomic save (truncate, then two chunks): the watcher may see the partial file
        const fd = openSync(file, "r+");
        ftruncateSync(fd, 0);
        const text = version(n);
        writeSync(fd, text.slice(0, 40), 0);
        await new Promise((r) => setTimeout(r, 5));
        writeSync(fd, text.slice(40), 40);
        closeSync(fd);
      } else atomicWrite(file, version(n));
      await new Promise((r) => setTimeout(r, 30));
    }
    await new Promise((r) => setTimeout(r, 150));
    stop = true;
    await Promise.all(runners);
    expect(b.current(cwd).policy.doc.name).toBe("v30-end");
    expect(seen.size).toBeGreaterThan(1); // reloads really happened during the evaluations
    expect(evaluations).toBeGreaterThan(10);
  });
});

describe("PolicyBroker profile selection", () => {
  test("spec acceptance: switching .substrate-profile applies to the next command (no reload needed)", () => {
    t = tempHome();
    t.write("a.yaml", "id: a\nname: A\n");
    t.write("b.yaml", "id: b\nname: B\n");
    const { writeFileSync: w, mkdirSync: mk } = require("node:fs") as typeof import("node:fs");
    const proj = join(t.home, "p");
    mk(join(proj, "sub"), { recursive: true });
    w(join(proj, ".substrate-profile"), "a\n");
    const b = new PolicyBroker({ home: t.home });
    broker = b;
    expect(b.current(join(proj, "sub")).policy.id).toBe("a");
    w(join(proj, ".substrate-profile"), "b\n"); // edited in place
    expect(b.current(join(proj, "sub")).policy.id).toBe("b");
    w(join(proj, "sub", ".substrate-profile"), "a\n"); // a nearer one appears
    expect(b.current(join(proj, "sub")).policy.id).toBe("a");
    expect(b.current(proj).policy.id).toBe("b");
  });
});
