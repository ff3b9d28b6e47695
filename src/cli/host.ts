/** `substrate host …` — host-scoped commands. */
import { defineCommand } from "citty";
import { getGlobals, worldFlag } from "./_globals.ts";

const doctor = defineCommand({
  meta: {
    name: "doctor",
    description: "Host readiness for world routing (prerequisites + transport). Side-effect free. Exit 0 ok, 3 dependency missing, 4 not ready",
  },
  args: {
    json: { type: "boolean", description: "print HostDoctorEnvelopeV1 JSON" },
    world: { type: "boolean", description: "--world / --no-world override for world_enabled" },
  },
  async run({ rawArgs, args }) {
    const { runDoctorCli } = await import("../doctor/cli.ts");
    process.exitCode = await runDoctorCli("host", rawArgs, {
      json: args.json || getGlobals().json,
      world: worldFlag(args, rawArgs), // subcommand flag wins over `substrate --no-world …`
    });
  },
});

export default defineCommand({
  meta: { name: "host", description: "Host-scoped commands" },
  subCommands: { doctor: () => doctor },
});
