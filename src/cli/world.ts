/** `substrate world …` — the world's lifecycle and what the binary carries for it. */
import { defineCommand } from "citty";

export default defineCommand({
  meta: { name: "world", description: "Manage the world: assets, warm, status, stop, doctor" },
  subCommands: {
    assets: () => import("./world/assets.ts").then((m) => m.default),
    doctor: () => import("./world/doctor.ts").then((m) => m.default), // DS0 world doctor
  },
});
