/** `substrate world restart` — Stop, then warm the world VM. */
import { defineCommand } from "citty";
import { createArgs, runLima } from "./_lima.ts";

export default defineCommand({
  meta: { name: "restart", description: "Stop, then warm the world VM" },
  args: createArgs,
  async run({ args }) {
    await runLima("restart", args);
  },
});
