/** `substrate world doctor [--json]` — world enforcement readiness, as reported by the agent. */
import { defineCommand } from "citty";
import { getGlobals, worldFlag } from "../_globals.ts";

export default defineCommand({
  meta: {
    name: "doctor",
    description:
      "World readiness: host probes + the agent's GET /v1/doctor/world. Side-effect free. Exit 0 ok, 3 agent unreachable, 4 disabled/missing prerequisites",
  },
  args: {
    json: { type: "boolean", description: "print WorldDoctorEnvelopeV1 JSON" },
    world: { type: "boolean", description: "--world / --no-world override for world_enabled" },
  },
  async run({ rawArgs, args }) {
    const { runDoctorCli } = await import("../../doctor/cli.ts");
    process.exitCode = await runDoctorCli("world", rawArgs, {
      json: args.json || getGlobals().json,
      world: worldFlag(args, rawArgs), // subcommand flag wins over `substrate --no-world …`
    });
  },
});
