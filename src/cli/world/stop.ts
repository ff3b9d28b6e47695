/** `substrate world stop` — Stop the world VM (macOS/Lima). */
import { defineCommand } from "citty";
import { commonArgs, runLima } from "./_lima.ts";

export default defineCommand({
  meta: { name: "stop", description: "Stop the world VM (macOS/Lima)" },
  args: commonArgs,
  async run({ args }) {
    await runLima("stop", args);
  },
});
