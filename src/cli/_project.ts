/** The project a command belongs to: nearest ancestor with .git or .substrate-profile, else cwd. */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";

export function projectDirFor(cwd: string): string {
  for (let d = cwd; ; d = dirname(d)) {
    if (existsSync(join(d, ".git")) || existsSync(join(d, ".substrate-profile"))) return d;
    if (dirname(d) === d) return cwd;
  }
}
