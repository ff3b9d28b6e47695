/** `substrate world …` — the world's lifecycle and what the binary carries for it. */
import { defineCommand } from "citty";

export default defineCommand({
  meta: { name: "world", description: "Manage the world: assets, warm, status, stop, doctor" },
  subCommands: {
    assets: () => import("./world/assets.ts").then((m) => m.default),
    doctor: () => import("./world/doctor.ts").then((m) => m.default), // DS0 world doctor
    // issue 7: the world VM's lifecycle (macOS/Lima; linux-local: warm/status only)
    warm: () => import("./world/warm.ts").then((m) => m.default),
    status: () => import("./world/status.ts").then((m) => m.default),
    stop: () => import("./world/stop.ts").then((m) => m.default),
    restart: () => import("./world/restart.ts").then((m) => m.default),
    verify: () => import("./world/verify.ts").then((m) => m.default), // issue 10: enforcement self-test
  },
});
