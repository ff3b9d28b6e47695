/** How this agent re-invokes itself (for the in-world spawner). */
export const isCompiled = (): boolean => Bun.main.startsWith("/$bunfs/") || Bun.main.startsWith("B:/~BUN/");
export const selfArgv = (): string[] => (isCompiled() ? [process.execPath] : [process.execPath, Bun.main]);
