/** `substrate discard SPAN` — drop an isolated command's changes. */
import { defineCommand } from "citty";
import { consola } from "consola";
import { agentClient, withClientErrors } from "./_client.ts";

export default defineCommand({
  meta: { name: "discard", description: "Discard an isolated command's changes" },
  args: { span: { type: "positional", description: "span id (spn_…)", required: true } },
  async run({ args }) {
    await withClientErrors(async () => (await agentClient()).discardFsDiff(String(args.span)));
    consola.success(`discarded ${args.span}`);
  },
});
