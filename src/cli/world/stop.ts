/** `substrate world stop` — Stop the world VM (macOS/Lima). */
import { defineCommand } from "citty";
import { commonArgs } from "./_lima.ts";
import { runWorldAction } from "./_run.ts";

export default defineCommand({
  meta: { name: "stop", description: "Stop the world (macOS: the Lima VM; Linux: the systemd units, or exactly the agent of the pid file)" },
  args: commonArgs,
  async run({ args }) {
    process.exitCode = await runWorldAction("stop", args as Parameters<typeof runWorldAction>[1]);
  },
});
