/** `substrate world restart` — Stop, then warm the world VM. */
import { defineCommand } from "citty";
import { createArgs } from "./_lima.ts";
import { LINUX_ARGS } from "./_linux.ts";
import { runWorldAction } from "./_run.ts";

export default defineCommand({
  meta: { name: "restart", description: "Stop, then warm the world (the installed layout is kept)" },
  args: { ...createArgs, ...LINUX_ARGS },
  async run({ args }) {
    process.exitCode = await runWorldAction("restart", args as Parameters<typeof runWorldAction>[1]);
  },
});
