/**
 * Reads what an SSH client needs from the `ssh.config` Lima writes for an instance
 * (`limactl list --json` → sshConfigFile): Hostname, Port, User, IdentityFile.
 *
 * Host keys: Lima itself writes `StrictHostKeyChecking no` + `UserKnownHostsFile
 * /dev/null` (the guest's keys change with every VM, and the endpoint is 127.0.0.1 on a
 * port Lima chose). We do the same — ssh2 accepts the key — and document the trade-off:
 * a local process racing for that loopback port could impersonate the guest.
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";

export interface SshEndpoint {
  host: string;
  port: number;
  user: string;
  identityFile: string;
  strictHostKeyChecking: boolean;
}

export class SshConfigError extends Error {
  override name = "SshConfigError";
}

export function parseSshConfig(text: string, file = "ssh.config"): SshEndpoint {
  const kv = new Map<string, string>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^(\S+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const key = m[1]!.toLowerCase();
    if (key === "host" && kv.size) break; // first Host block only
    if (!kv.has(key)) kv.set(key, m[2]!.replace(/^"(.*)"$/, "$1"));
  }
  const port = Number(kv.get("port"));
  const user = kv.get("user");
  let identityFile = kv.get("identityfile");
  if (!Number.isInteger(port) || port <= 0 || !user || !identityFile)
    throw new SshConfigError(`${file}: missing Port, User or IdentityFile (is the VM running?)`);
  if (identityFile.startsWith("~/")) identityFile = homedir() + identityFile.slice(1);
  return {
    host: kv.get("hostname") ?? "127.0.0.1",
    port,
    user,
    identityFile,
    strictHostKeyChecking: (kv.get("stricthostkeychecking") ?? "no").toLowerCase() !== "no",
  };
}

export function readSshConfig(file: string): SshEndpoint {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new SshConfigError(`cannot read ${file}: ${(e as Error).message}`);
  }
  return parseSshConfig(text, file);
}
