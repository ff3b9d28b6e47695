/**
 * Issue 18 faults: `apply` of an isolated result SIGKILLed half way (the agent dies while
 * files land). Each path lands atomically (temp file + rename) and is journaled; the project
 * is "between" only until the next apply of that result, which removes the dead apply's temp
 * files, lands the rest, and says exactly which paths the interrupted one had landed.
 * Judged on the project: every file whole (never a prefix of its content), no temp file left,
 * and in the end exactly the result.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FsApplyResponse } from "../../src/contract/fsdiff.ts";
import { startAgent, tempProject, type TestAgent } from "../helpers/agent.ts";
import { http } from "./api-helpers.ts";

const N = 4000;
let overlay: string;
let proj: string;
beforeAll(() => {
  overlay = mkdtempSync("/var/lib/substrate/test-faults-apply-");
  proj = tempProject("substrate-faults-apply-");
  writeFileSync(join(proj, "keep.txt"), "original\n");
});
afterAll(() => {
  rmSync(overlay, { recursive: true, force: true });
  rmSync(proj, { recursive: true, force: true });
});

const content = (i: number) => `file ${i} `.repeat(400); // ~4 KB each
const temps = (d: string): string[] => readdirSync(d, { recursive: true }).map(String).filter((p) => p.split("/").pop()!.startsWith(".substrate-apply-"));

test(`apply SIGKILLed half way through ${N} files: whole files only, and the next apply finishes it and names what had landed`, async () => {
  const env = { SUBSTRATE_OVERLAY_DIR: overlay };
  let agent: TestAgent | undefined = await startAgent({ env });
  let next: TestAgent | undefined;
  try {
    const r = await agent.client.execute({ cmd: `python3 -c "
import os
os.mkdir('many')
for i in range(1, ${N + 1}):
    open(f'many/f{i}', 'w').write(f'file {i} ' * 400)
open('keep.txt', 'w').write('changed\\n')
"`, cwd: proj, agent_id: "apply", isolated: true });
    expect(r.exit).toBe(0);
    expect(r.fs_diff).toBeTruthy();
    const span = r.span_id;
    expect(existsSync(join(proj, "many"))).toBe(false);

    // start the apply and kill the agent once some, but not all, files have landed
    const applying = http(agent.socket, "POST", `/v1/fs_diff/${span}/apply`, {}).catch((e) => e);
    let landed = 0;
    for (let i = 0; i < 20_000; i++) {
      landed = existsSync(join(proj, "many")) ? readdirSync(join(proj, "many")).filter((f) => !f.startsWith(".")).length : 0;
      if (landed > 0) break;
      await Bun.sleep(1);
    }
    agent.proc.kill("SIGKILL");
    await agent.proc.exited;
    await applying;
    const present = readdirSync(join(proj, "many")).filter((f) => !f.startsWith("."));
    expect(present.length).toBeGreaterThan(0);
    expect(present.length).toBeLessThan(N); // really half way (the apply had not finished)
    // between, but never a torn file: every file that is there is whole
    for (const f of present) expect(readFileSync(join(proj, "many", f), "utf8")).toBe(content(Number(f.slice(1))));

    // the restarted agent: the next apply of the result removes the dead one's temp files,
    // lands the rest and names what had landed
    next = await startAgent({ env, socket: agent.socket, stateDir: agent.stateDir });
    const again = await http(next.socket, "POST", `/v1/fs_diff/${span}/apply`, {});
    expect(again.status).toBe(200);
    const body = FsApplyResponse.parse(again.body);
    expect(body.interrupted).toBeTruthy();
    const had = new Set(body.interrupted!.landed);
    for (const f of present) expect(had.has(`many/${f}`)).toBe(true); // every file we saw is named
    // and it named nothing that was not there (a landed path is on disk)
    for (const p of had) if (p.startsWith("many/f")) expect(present.includes(p.slice(5))).toBe(true);

    // after: exactly the result, no temp file anywhere
    const all = readdirSync(join(proj, "many"));
    expect(all.filter((f) => f.startsWith(".")).length).toBe(0);
    expect(all.length).toBe(N);
    for (const i of [1, 2, Math.floor(N / 2), N]) expect(readFileSync(join(proj, "many", `f${i}`), "utf8")).toBe(content(i));
    expect(readFileSync(join(proj, "keep.txt"), "utf8")).toBe("changed\n");
    expect(temps(proj)).toEqual([]);
    // a third apply has nothing left to report as interrupted
    const third = FsApplyResponse.parse((await http(next.socket, "POST", `/v1/fs_diff/${span}/apply`, {})).body);
    expect(third.interrupted).toBeUndefined();
  } finally {
    await next?.stop();
    if (agent?.proc.exitCode === null) agent.proc.kill("SIGKILL");
    await agent?.stop().catch(() => {});
    agent = undefined;
  }
}, 170_000);
