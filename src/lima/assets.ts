/**
 * What `substrate world warm` pushes into the Lima guest: the linux agent of the host's
 * CPU arch (embedded, zstd), the two unit files and provision.sh (guest-assets/), and the
 * Lima profiles it creates the VM from. Running from source there is no embedded agent:
 * SUBSTRATE_WORLD_AGENT_BIN may point at a linux agent binary (tests, development).
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { VersionInfo, type LimaProfileName } from "../contract/index.ts";
import { assetFiles, extractAgent, getEmbedded } from "../embedded.ts";
import { substrateHome } from "../config.ts";
import { versionString } from "../version.ts";

export const SOCKET_UNIT = "substrate-world-agent.socket";
export const SERVICE_UNIT = "substrate-world-agent.service";
export const PROVISION_SCRIPT = "provision.sh";
export const PROFILE_FILES: Record<LimaProfileName, string> = { slim: "lima/substrate.yaml", dev: "lima/substrate-dev.yaml" };

export class AssetsUnavailable extends Error {
  override name = "AssetsUnavailable";
  constructor(
    message: string,
    readonly hint: string,
  ) {
    super(message);
  }
}

export interface AgentSource {
  /** Host path of the linux agent binary to copy into the guest. */
  path(): Promise<string>;
  /** The version the guest's `substrate-world-agent --version --json` must print. */
  version: VersionInfo | null;
  /** sha256 of the binary (used when the version cannot be known). */
  sha256: string;
}

export interface GuestAssets {
  files: Record<string, Uint8Array>;
  socketUnit: Uint8Array;
  serviceUnit: Uint8Array;
  provision: Uint8Array;
  profile(name: LimaProfileName): string;
  agent: AgentSource;
}

export const sha256 = (b: Uint8Array | string): string => createHash("sha256").update(b).digest("hex");

function overrideAgent(bin: string): AgentSource {
  if (!existsSync(bin)) throw new AssetsUnavailable(`SUBSTRATE_WORLD_AGENT_BIN=${bin} does not exist`, "point it at a linux substrate-world-agent binary, or unset it");
  let version: VersionInfo | null = null;
  // Runs only when the binary is for this OS/arch (Linux tests); on a Mac the sha256 decides.
  const r = Bun.spawnSync([bin, "--version", "--json"], { stdout: "pipe", stderr: "ignore", timeout: 10_000 });
  if (r.exitCode === 0) {
    const p = VersionInfo.safeParse((() => { try { return JSON.parse(r.stdout.toString()); } catch { return null; } })());
    if (p.success) version = p.data;
  }
  return { path: async () => bin, version, sha256: sha256(readFileSync(bin)) };
}

export async function loadGuestAssets(env: NodeJS.ProcessEnv = process.env): Promise<GuestAssets> {
  const files = await assetFiles();
  const need = (rel: string) => {
    const f = files[rel];
    if (!f) throw new AssetsUnavailable(`guest asset ${rel} is missing from this build`, "rebuild with `make build` (guest-assets/ is embedded)");
    return f;
  };
  const embedded = getEmbedded();
  let agent: AgentSource;
  if (env.SUBSTRATE_WORLD_AGENT_BIN) agent = overrideAgent(env.SUBSTRATE_WORLD_AGENT_BIN);
  else if (embedded) {
    const e = embedded.agent;
    // Extracted once per version next to the host's other state; the guest gets a copy.
    const dir = join(substrateHome(env), "lima", "agent", versionString(e.version));
    agent = {
      version: e.version,
      sha256: e.sha256,
      path: async () => {
        const dest = join(dir, "substrate-world-agent");
        if (!existsSync(dest) || sha256(readFileSync(dest)) !== e.sha256) await extractAgent(dir);
        return dest;
      },
    };
  } else
    throw new AssetsUnavailable(
      "no linux world agent is embedded in this build (running from source)",
      "use a built binary (`make build`, dist/substrate-*) or set SUBSTRATE_WORLD_AGENT_BIN to a linux substrate-world-agent",
    );
  return {
    files,
    socketUnit: need(SOCKET_UNIT),
    serviceUnit: need(SERVICE_UNIT),
    provision: need(PROVISION_SCRIPT),
    profile: (name) => new TextDecoder().decode(need(PROFILE_FILES[name])),
    agent,
  };
}
