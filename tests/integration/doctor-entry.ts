/**
 * Test entry: the two doctor commands mounted exactly as the real CLI mounts them
 * (`host doctor`, `world doctor`), used until/unless tests run the compiled `substrate`.
 */
import { defineCommand, runMain } from "citty";
import host from "../../src/cli/host.ts";
import worldDoctor from "../../src/cli/world/doctor.ts";

await runMain(
  defineCommand({
    meta: { name: "substrate" },
    subCommands: { host, world: defineCommand({ meta: { name: "world" }, subCommands: { doctor: worldDoctor } }) },
  }),
);
