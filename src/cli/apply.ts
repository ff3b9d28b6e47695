/** `substrate apply SPAN [PATH…]` — land an isolated command's changes on the project (all, or these paths). */
import { defineCommand } from "citty";
import { consola } from "consola";
import { agentClient, withClientErrors } from "./_client.ts";
import { getGlobals } from "./_globals.ts";

export default defineCommand({
  meta: { name: "apply", description: "Apply an isolated command's changes to the project (all, or the given diff paths)" },
  args: {
    span: { type: "positional", description: "span id (spn_…)", required: true },
    json: { type: "boolean", description: "Print the result JSON" },
  },
  async run({ args }) {
    const paths = (args._ as string[]).slice(1);
    const r = await withClientErrors(async () => (await agentClient()).applyFsDiff(String(args.span), paths.length ? paths : undefined));
    if (args.json || getGlobals().json) return void console.log(JSON.stringify(r, null, 2));
    // Issue 18 faults: an earlier apply of this result died half way; this one finished it.
    if (r.interrupted) consola.warn(`an earlier apply of ${args.span} was interrupted after landing ${r.interrupted.landed.length} path(s); this one finished it`);
    consola.success(`applied ${r.applied.length} path(s)`);
    for (const p of r.applied) console.log(`  ${p}`);
    for (const s of r.skipped) consola.warn(`skipped ${s.path}: ${s.reason}`);
  },
});
