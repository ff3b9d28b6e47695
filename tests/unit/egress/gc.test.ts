/** The netns GC after issue 15: gateway socket dirs of dead worlds only (agent/egress/gc.ts). */
import { expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startNetnsGc } from "../../../agent/egress/gc.ts";

test("removes egress dirs of gone worlds; keeps live ones and those of another agent's worlds; TTL destroys old worlds", async () => {
  const state = mkdtempSync(join(tmpdir(), "substrate-gc-"));
  try {
    for (const id of ["wld_live", "wld_other", "wld_dead"]) mkdirSync(join(state, "egress", id), { recursive: true });
    mkdirSync(join(state, "worlds", "wld_other"), { recursive: true }); // another agent's live world
    const destroyed: string[] = [];
    const gc = startNetnsGc({
      stateDir: state,
      intervalSecs: 0,
      ttlSecs: 60,
      worlds: () => [{ id: "wld_live", createdAt: Date.now() - 120_000 }],
      destroyWorld: async (id) => void destroyed.push(id),
    });
    const r = await gc.sweep();
    expect(r.collected).toEqual(["wld_dead"]);
    expect(existsSync(join(state, "egress", "wld_live"))).toBe(true);
    expect(existsSync(join(state, "egress", "wld_other"))).toBe(true);
    expect(r.expired).toEqual(["wld_live"]);
    expect(destroyed).toEqual(["wld_live"]);
    gc.stop();
  } finally {
    rmSync(state, { recursive: true, force: true });
  }
});
