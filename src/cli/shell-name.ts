/**
 * Which shell argv[0] asks for (the bash entry, issue 16): the shim `~/.substrate/shims/bash`
 * (also `sh`, `zsh`; `-bash` for a login shell) → its name, else null. A module of its own,
 * importing nothing (not even node:path), so `src/cli/main.ts` asks it on every start without
 * loading the bash entry (`--version` stays near Bun's own start). src/cli/bash.ts re-exports both.
 */

/** Shell names the entry answers to, and the real shell each runs. */
export const SHELL_NAMES: Record<string, string> = { bash: "/bin/bash", sh: "/bin/sh", zsh: "/bin/zsh" };

/** The shell name argv[0] asks for (`/x/shims/bash`, `-bash` for a login shell), or null. */
export function shellNameOf(argv0: string | undefined): string | null {
  if (!argv0) return null;
  const n = argv0.slice(argv0.lastIndexOf("/") + 1).replace(/^-/, ""); // basename
  return Object.hasOwn(SHELL_NAMES, n) ? n : null; // (not `in`: "toString" is no shell)
}
