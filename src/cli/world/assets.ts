/**
 * `substrate world assets list|extract DIR` — what this binary embeds (the linux agent,
 * systemd units, Lima profiles) and a way to write it out for debugging or manual installs.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { defineCommand } from "citty";
import { consola } from "consola";
import { assetFiles, extractAgent, getEmbedded } from "../../embedded.ts";
import { versionString } from "../../version.ts";
import { CliError, ExitCode } from "../_errors.ts";
import { getGlobals } from "../_globals.ts";

const list = defineCommand({
  meta: { name: "list", description: "List the embedded agent (version, arch, sizes) and guest assets" },
  args: { json: { type: "boolean", description: "Print JSON" } },
  async run({ args }) {
    const e = getEmbedded();
    const files = await assetFiles();
    const info = {
      host_version: versionString(),
      agent: e
        ? { target: e.agent.target, version: versionString(e.agent.version), sha256: e.agent.sha256, size: e.agent.size, compressed_size: e.agent.compressed_size, compression: "zstd" }
        : null,
      assets: Object.keys(files).sort().map((f) => ({ path: f, size: files[f]!.length })),
    };
    if (args.json || getGlobals().json) return void console.log(JSON.stringify(info, null, 2));
    if (!e) consola.warn("no agent embedded: running from source (the agent is agent/main.ts)");
    else consola.info(`agent ${info.agent!.version} (${e.agent.target}), ${e.agent.size} bytes (${e.agent.compressed_size} zstd)`);
    for (const a of info.assets) console.log(`  ${a.path}  ${a.size} bytes`);
  },
});

const extract = defineCommand({
  meta: { name: "extract", description: "Write the embedded agent and guest assets into DIR" },
  args: { dir: { type: "positional", description: "Target directory", required: true } },
  async run({ args }) {
    const dir = resolve(String(args.dir));
    mkdirSync(dir, { recursive: true });
    const e = getEmbedded();
    if (!e) throw new CliError(ExitCode.UNSUPPORTED, "no agent embedded in this binary (running from source)", "build with `make build` and use dist/substrate-*");
    const agent = await extractAgent(dir);
    const files = await assetFiles();
    for (const [rel, bytes] of Object.entries(files)) {
      const dest = join(dir, "guest-assets", rel);
      mkdirSync(dirname(dest), { recursive: true });
      writeFileSync(dest, bytes, { mode: rel.endsWith(".sh") ? 0o755 : 0o644 });
    }
    consola.success(`wrote ${agent} and ${Object.keys(files).length} guest asset(s) under ${join(dir, "guest-assets")}`);
  },
});

export default defineCommand({
  meta: { name: "assets", description: "Show or extract what this binary embeds" },
  subCommands: { list, extract },
});
