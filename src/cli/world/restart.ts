/** `substrate world restart` — Stop, then warm the world VM. */
import { defineCommand } from "citty";
import { createArgs, runLima, usesLima } from "./_lima.ts";
import { LINUX_ARGS, runLinux } from "./_linux.ts";

export default defineCommand({
  meta: { name: "restart", description: "Stop, then warm the world (the installed layout is kept)" },
  args: { ...createArgs, ...LINUX_ARGS },
  async run({ args }) {
    // issue 10: Linux hosts run src/lifecycle (socket_activation | manual | rootless).
    if (!usesLima()) return void (process.exitCode = await runLinux("restart", args as Parameters<typeof runLinux>[1]));
    await runLima("restart", args);
  },
});
