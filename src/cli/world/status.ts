/** `substrate world status` — Show the world VM and agent layout state (read-only). Exit 0 healthy, 3 not ready. */
import { defineCommand } from "citty";
import { commonArgs, runLima, usesLima } from "./_lima.ts";
import { runLinux } from "./_linux.ts";

export default defineCommand({
  meta: { name: "status", description: "Show the world (macOS: VM + agent layout; Linux: mode, agent vs embedded version, socket, live worlds, degraded features). Exit 0 healthy, 3 not ready" },
  args: commonArgs,
  async run({ args }) {
    // issue 10: Linux hosts run src/lifecycle (socket_activation | manual | rootless).
    if (!usesLima()) return void (process.exitCode = await runLinux("status", args as Parameters<typeof runLinux>[1]));
    await runLima("status", args);
  },
});
