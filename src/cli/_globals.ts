/** Root-level flags (`substrate --no-world world doctor`) visible to every subcommand. */
export interface Globals {
  /** --world → true, --no-world → false, neither → undefined. */
  world?: boolean;
  json: boolean;
}
const globals: Globals = { json: false };
export const getGlobals = (): Globals => globals;
export const setGlobals = (g: Partial<Globals>): void => {
  Object.assign(globals, g);
};

/** A subcommand's own --world/--no-world wins over the root's. */
export function worldFlag(args: { world?: boolean | undefined }, rawArgs: string[]): boolean | undefined {
  if (rawArgs.includes("--no-world")) return false;
  if (rawArgs.includes("--world")) return true;
  return args.world ?? globals.world;
}
