/** Root-level argument parsing (the part citty cannot do: `-c CMD` before subcommands). */
import { describe, expect, test } from "bun:test";
import { parseRoot } from "../../../src/cli/main.ts";
import { CliError } from "../../../src/cli/_errors.ts";

describe("parseRoot", () => {
  test("-c takes the next argument whatever it looks like", () => {
    expect(parseRoot(["-c", "world status"]).cmd).toBe("world status");
    expect(parseRoot(["-c", "--version"]).cmd).toBe("--version");
    expect(parseRoot(["--command=ls"]).cmd).toBe("ls");
  });
  test("--world / --no-world / --json before a subcommand, the rest passes through", () => {
    const r = parseRoot(["--no-world", "--json", "world", "doctor", "--world"]);
    expect(r.world).toBe(false);
    expect(r.json).toBe(true);
    expect(r.rest).toEqual(["world", "doctor", "--world"]);
  });
  test("usage errors are CliErrors with exit 2", () => {
    // (a bare `-c` is bash's form now: the bash entry reports it, in substrate's style, exit 2 —
    // tests/integration/cli.test.ts)
    expect(parseRoot(["-c"]).bash).toEqual(["-c"]);
    for (const a of [["--nope"]]) {
      try {
        parseRoot(a);
        throw new Error("expected failure");
      } catch (e) {
        expect(e).toBeInstanceOf(CliError);
        expect((e as CliError).exitCode).toBe(2);
      }
    }
  });
});
