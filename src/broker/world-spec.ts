/** Policy → the world the commands run in (WorldSpecInput of src/contract/world.ts). */
import type { Policy, WorldSpecInput } from "../contract/index.ts";
import type { CompiledPolicy } from "./compile.ts";

export function worldSpecFromPolicy(policy: Policy | CompiledPolicy, projectDir: string): WorldSpecInput {
  const doc: Policy = "doc" in policy ? policy.doc : policy;
  const limits = doc.world.limits;
  // Issue 13 (FSVIEW): the fs section becomes the world's fs view. `$HOME`/`~` belong to the
  // CALLER and are expanded by the agent: a compiled policy already expanded them with this
  // process's home, so they are turned back into `~` here (Lima, sudo: the homes differ).
  const home = "doc" in policy ? policy.home : undefined;
  const raw = (list: readonly string[]): string[] =>
    list.map((p) => (home && home !== "/" ? (p === home ? "~" : p.startsWith(`${home}/`) ? `~${p.slice(home.length)}` : p) : p));
  return {
    project_dir: projectDir,
    reuse_session: doc.world.reuse_session,
    isolate_network: doc.world.isolate_network,
    enable_preload: doc.world.enable_preload,
    allow_ptrace: doc.world.allow_ptrace,
    root_inside: doc.world.root_inside,
    allowed_domains: [...doc.net.allowed],
    // Issue 15 (EGRESS): the gateway names the policy in its denials and enforces the budget per command.
    egress: {
      policy_id: doc.id,
      ...(doc.net.egress_budget?.total_bytes !== undefined ? { total_bytes: doc.net.egress_budget.total_bytes } : {}),
      ...(doc.net.egress_budget?.bytes_per_sec ? { bytes_per_sec: doc.net.egress_budget.bytes_per_sec } : {}),
    },
    limits: {
      ...(limits.cpu !== undefined ? { cpu: limits.cpu } : {}),
      ...(limits.memory !== undefined ? { memory: limits.memory } : {}),
      ...(limits.pids !== undefined ? { pids: limits.pids } : {}),
    },
    fs_view: {
      // as written (`$PROJECT` must be the WORLD's project, which may not be the one this policy
      // was compiled for: `world verify` compiles for the cwd and builds a throwaway project)
      read: "rawFs" in policy ? [...policy.rawFs.read] : raw(doc.fs.read),
      write: "rawFs" in policy ? [...policy.rawFs.write] : raw(doc.fs.write),
      // ...and the secrets under THIS process's home too, when it is a different path (the Lima
      // guest shows the Mac's home at its own path, next to the guest user's home).
      deny_read: [...new Set([...raw(doc.fs.deny_read), ...(home && home !== "/" ? doc.fs.deny_read.flatMap((p) => atHome(p, home)) : [])])],
      read_only: raw(doc.fs.read_only),
    },
  };
}

/** `~/x`, `$HOME/x`, `${HOME}/x` with `home`; [] for anything else. */
function atHome(p: string, home: string): string[] {
  if (p === "~" || p.startsWith("~/")) return [home + p.slice(1)];
  const m = /^\$(?:\{HOME\}|HOME(?![A-Za-z0-9_]))(.*)$/.exec(p);
  return m ? [home + m[1]] : [];
}
