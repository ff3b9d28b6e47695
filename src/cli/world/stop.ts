/** `substrate world stop` — Stop the world VM (macOS/Lima). */
import { defineCommand } from "citty";
import { commonArgs, runLima, usesLima } from "./_lima.ts";
import { runLinux } from "./_linux.ts";

export default defineCommand({
  meta: { name: "stop", description: "Stop the world (macOS: the Lima VM; Linux: the systemd units, or exactly the agent of the pid file)" },
  args: commonArgs,
  async run({ args }) {
    // issue 10: Linux hosts run src/lifecycle (socket_activation | manual | rootless).
    if (!usesLima()) return void (process.exitCode = await runLinux("stop", args as Parameters<typeof runLinux>[1]));
    await runLima("stop", args);
  },
});
