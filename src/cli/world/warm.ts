/** `substrate world warm` — Start or create the world VM, check the socket-activated agent layout, repair what differs (idempotent). */
import { defineCommand } from "citty";
import { createArgs } from "./_lima.ts";
import { LINUX_ARGS } from "./_linux.ts";
import { runWorldAction } from "./_run.ts";

export default defineCommand({
  meta: { name: "warm", description: "Start the world, idempotent. macOS: create/start the Lima VM and repair its agent layout. Linux: the agent via systemd socket activation (root+systemd), manual (root), or rootless (user)" },
  args: { ...createArgs, ...LINUX_ARGS },
  async run({ args }) {
    process.exitCode = await runWorldAction("warm", args as Parameters<typeof runWorldAction>[1]);
  },
});
