/**
 * Files compiled into the host binary: the zstd-compressed linux agent of the host's CPU
 * arch and everything under guest-assets/. scripts/build.ts generates the entry that
 * registers them; running from source there is nothing embedded and the agent is
 * `bun agent/main.ts` from the checkout.
 */
import { chmodSync, existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { VersionInfo } from "./contract/index.ts";

export interface EmbeddedAgent {
  /** $bunfs path of the compressed binary. */
  file: string;
  target: "linux-x64" | "linux-arm64";
  /** sha256 of the uncompressed binary. */
  sha256: string;
  size: number;
  compressed_size: number;
  version: VersionInfo;
}

export interface Embedded {
  agent: EmbeddedAgent;
  /** guest-assets relative path -> $bunfs path */
  assets: Record<string, string>;
}

let embedded: Embedded | null = null;
export const setEmbedded = (e: Embedded): void => {
  embedded = e;
};
export const getEmbedded = (): Embedded | null => embedded;

/** Source checkout root when running from source. */
export const sourceRoot = (): string => join(dirname(new URL(import.meta.url).pathname), "..");

export async function agentBytes(): Promise<Uint8Array> {
  if (!embedded) throw new Error("no agent is embedded in this build (running from source)");
  const z = new Uint8Array(await Bun.file(embedded.agent.file).arrayBuffer());
  return Bun.zstdDecompressSync(z);
}

/** Write the embedded agent to DIR/substrate-world-agent (atomic rename, 0755). */
export async function extractAgent(dir: string): Promise<string> {
  const dest = join(dir, "substrate-world-agent");
  mkdirSync(dir, { recursive: true });
  const tmp = `${dest}.tmp-${process.pid}`;
  writeFileSync(tmp, await agentBytes(), { mode: 0o755 });
  chmodSync(tmp, 0o755);
  renameSync(tmp, dest);
  return dest;
}

/** Guest assets: from the binary, or from the checkout when running from source. */
export async function assetFiles(): Promise<Record<string, Uint8Array>> {
  const out: Record<string, Uint8Array> = {};
  if (embedded) {
    for (const [rel, file] of Object.entries(embedded.assets)) out[rel] = new Uint8Array(await Bun.file(file).arrayBuffer());
    return out;
  }
  const root = join(sourceRoot(), "guest-assets");
  if (!existsSync(root)) return out;
  for await (const rel of new Bun.Glob("**/*").scan({ cwd: root, dot: true })) out[rel] = new Uint8Array(await Bun.file(join(root, rel)).arrayBuffer());
  return out;
}

/** The argv that starts an agent: SUBSTRATE_WORLD_AGENT_BIN, the embedded one, or source. */
export async function agentCommand(extractDir: string, env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  if (env.SUBSTRATE_WORLD_AGENT_BIN) return [env.SUBSTRATE_WORLD_AGENT_BIN];
  if (embedded) {
    const dest = join(extractDir, "substrate-world-agent");
    if (!existsSync(dest)) await extractAgent(extractDir);
    return [dest];
  }
  return [process.execPath, join(sourceRoot(), "agent", "main.ts")];
}
