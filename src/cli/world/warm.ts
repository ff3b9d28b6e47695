/** `substrate world warm` — Start or create the world VM, check the socket-activated agent layout, repair what differs (idempotent). */
import { defineCommand } from "citty";
import { createArgs, runLima } from "./_lima.ts";

export default defineCommand({
  meta: { name: "warm", description: "Start or create the world VM, check the socket-activated agent layout, repair what differs (idempotent)" },
  args: createArgs,
  async run({ args }) {
    await runLima("warm", args);
  },
});
