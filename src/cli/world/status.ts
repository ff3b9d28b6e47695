/** `substrate world status` — Show the world VM and agent layout state (read-only). Exit 0 healthy, 3 not ready. */
import { defineCommand } from "citty";
import { commonArgs } from "./_lima.ts";
import { runWorldAction } from "./_run.ts";

export default defineCommand({
  meta: { name: "status", description: "Show the world (macOS: VM + agent layout; Linux: mode, agent vs embedded version, socket, live worlds, degraded features). Exit 0 healthy, 3 not ready" },
  args: commonArgs,
  async run({ args }) {
    process.exitCode = await runWorldAction("status", args as Parameters<typeof runWorldAction>[1]);
  },
});
