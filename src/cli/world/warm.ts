/** `substrate world warm` — Start or create the world VM, check the socket-activated agent layout, repair what differs (idempotent). */
import { defineCommand } from "citty";
import { createArgs, runLima, usesLima } from "./_lima.ts";
import { LINUX_ARGS, runLinux } from "./_linux.ts";

export default defineCommand({
  meta: { name: "warm", description: "Start the world, idempotent. macOS: create/start the Lima VM and repair its agent layout. Linux: the agent via systemd socket activation (root+systemd), manual (root), or rootless (user)" },
  args: { ...createArgs, ...LINUX_ARGS },
  async run({ args }) {
    // issue 10: Linux hosts run src/lifecycle (socket_activation | manual | rootless).
    if (!usesLima()) return void (process.exitCode = await runLinux("warm", args as Parameters<typeof runLinux>[1]));
    await runLima("warm", args);
  },
});
