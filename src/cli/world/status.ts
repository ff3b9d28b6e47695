/** `substrate world status` — Show the world VM and agent layout state (read-only). Exit 0 healthy, 3 not ready. */
import { defineCommand } from "citty";
import { commonArgs, runLima } from "./_lima.ts";

export default defineCommand({
  meta: { name: "status", description: "Show the world VM and agent layout state (read-only). Exit 0 healthy, 3 not ready" },
  args: commonArgs,
  async run({ args }) {
    await runLima("status", args);
  },
});
