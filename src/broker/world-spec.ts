/** Policy → the world the commands run in (WorldSpecInput of src/contract/world.ts). */
import type { Policy, WorldSpecInput } from "../contract/index.ts";
import type { CompiledPolicy } from "./compile.ts";

export function worldSpecFromPolicy(policy: Policy | CompiledPolicy, projectDir: string): WorldSpecInput {
  const doc: Policy = "doc" in policy ? policy.doc : policy;
  const limits = doc.world.limits;
  return {
    project_dir: projectDir,
    reuse_session: doc.world.reuse_session,
    isolate_network: doc.world.isolate_network,
    enable_preload: doc.world.enable_preload,
    allowed_domains: [...doc.net.allowed],
    limits: {
      ...(limits.cpu !== undefined ? { cpu: limits.cpu } : {}),
      ...(limits.memory !== undefined ? { memory: limits.memory } : {}),
      ...(limits.pids !== undefined ? { pids: limits.pids } : {}),
    },
  };
}
