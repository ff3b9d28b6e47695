/** `substrate diff SPAN [--json]` — what an isolated command changed (its overlay's fs diff). */
import { defineCommand } from "citty";
import type { FsDiff } from "../contract/world.ts";
import { agentClient, withClientErrors } from "./_client.ts";
import { getGlobals } from "./_globals.ts";

export function renderDiff(d: FsDiff): string {
  const lines = [
    ...d.writes.map((p) => `+ ${p}`),
    ...d.mods.map((p) => `~ ${p}`),
    ...d.deletes.map((p) => `- ${p}`),
  ];
  if (d.summary) lines.push(`(${d.summary}${d.tree_hash ? `, ${d.tree_hash}` : ""})`);
  return lines.join("\n");
}

export default defineCommand({
  meta: { name: "diff", description: "Show the fs diff of an isolated command (+ written, ~ modified, - deleted)" },
  args: {
    span: { type: "positional", description: "span id (spn_…) printed by the isolated command", required: true },
    json: { type: "boolean", description: "Print the FsDiff JSON" },
  },
  async run({ args }) {
    const d = await withClientErrors(async () => (await agentClient()).fsDiff(String(args.span)));
    console.log(args.json || getGlobals().json ? JSON.stringify(d, null, 2) : renderDiff(d));
  },
});
