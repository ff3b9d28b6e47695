/**
 * What the span graph may index (spec section 9, PrivacyConfig). Defaults: never
 * `~/.ssh`, `~/Library`, `/var/log/auth*`, `**\/.env`, `**\/secrets`; only code files unless
 * `index_user_docs`; content hashing is opt-in.
 *
 * Matching: a pattern is a glob over absolute paths (`~` = the user's home, `**` any
 * number of path components, `*` and `?` within one component). A path is ignored when
 * it or ANY of its ancestors matches, so `**\/secrets` keeps out everything under a
 * `secrets` directory and `~/.ssh` everything under it.
 */
import { extname } from "node:path";

/** The spec's list plus the obvious siblings (headers, TS/JS variants, common languages). */
export const CODE_EXTENSIONS: ReadonlySet<string> = new Set([
  // spec: rs js ts py go c cpp java
  "rs", "js", "ts", "py", "go", "c", "cpp", "java",
  "h", "hpp", "cc", "cxx", "hh", "tsx", "jsx", "mjs", "cjs", "mts", "cts",
  "rb", "kt", "kts", "swift", "cs", "php", "scala", "sh", "bash", "zsh", "lua", "pl", "zig", "m", "mm", "sql",
]);

export const DEFAULT_IGNORE_PATHS: readonly string[] = ["~/.ssh", "~/Library", "/var/log/auth*", "**/.env", "**/secrets"];

export interface PrivacyConfig {
  ignore_paths: string[];
  /** index non-code files too (spec default false) */
  index_user_docs: boolean;
  /** hash non-code files too (spec `hash_code_only: true` = this false, the default) */
  hash_non_code: boolean;
}

export const defaultPrivacy = (): PrivacyConfig => ({
  ignore_paths: [...DEFAULT_IGNORE_PATHS],
  index_user_docs: false,
  hash_non_code: false,
});

function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*" && glob[i + 1] === "*") {
      // `**/` = zero or more whole components; a trailing `**` = anything
      if (glob[i + 2] === "/") {
        re += "(?:.*/)?";
        i += 2;
      } else {
        re += ".*";
        i += 1;
      }
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

export class PrivacyFilter {
  private readonly res: RegExp[];

  constructor(
    readonly config: PrivacyConfig,
    readonly home: string,
  ) {
    this.res = config.ignore_paths.map((p) => {
      let g = p.startsWith("~/") || p === "~" ? home.replace(/\/+$/, "") + p.slice(1) : p;
      // `**/x` relative globs apply anywhere; other relative patterns are taken as `**/pattern`
      if (!g.startsWith("/") && !g.startsWith("**")) g = `**/${g}`;
      if (g.startsWith("**/")) g = `/${g}`;
      return globToRegExp(g.replace(/\/+$/, ""));
    });
  }

  /** True when the path or one of its ancestors is in ignore_paths. */
  ignored(abs: string): boolean {
    let p = abs.replace(/\/+$/, "");
    while (p !== "") {
      for (const re of this.res) if (re.test(p)) return true;
      p = p.slice(0, p.lastIndexOf("/"));
    }
    return false;
  }

  isCode(path: string): boolean {
    return CODE_EXTENSIONS.has(extname(path).slice(1).toLowerCase());
  }

  /** Spec should_index_file: not ignored, and code unless index_user_docs. */
  shouldIndex(abs: string): boolean {
    if (this.ignored(abs)) return false;
    return this.config.index_user_docs || this.isCode(abs);
  }

  /** Hash content? Indexed code files yes; indexed non-code files only with hash_non_code. */
  shouldHash(abs: string): boolean {
    if (!this.shouldIndex(abs)) return false;
    return this.isCode(abs) || this.config.hash_non_code;
  }
}
