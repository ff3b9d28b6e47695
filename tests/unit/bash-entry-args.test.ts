/** Issue 16: bash's invocation forms as the entry reads them (src/cli/bash-args.ts) and the side-channel detectors. */
import { describe, expect, test } from "bun:test";
import { BashUsageError, parseBashArgs, policySubject } from "../../src/cli/bash-args.ts";
import { claudeCwdFile, geminiBgpidsFile } from "../../src/cli/bash-side.ts";
import { parseRoot } from "../../src/cli/main.ts";
import { shellNameOf } from "../../src/cli/bash.ts";

describe("parseBashArgs", () => {
  const cases: [string[], Partial<ReturnType<typeof parseBashArgs>>][] = [
    [["-c", "echo hi"], { mode: "command", command: "echo hi", positional: [] }],
    [["-c", "echo $0 $1", "a0", "a1"], { mode: "command", command: "echo $0 $1", positional: ["a0", "a1"] }],
    [["-lc", "x"], { mode: "command", command: "x", login: true }],
    [["-c", "-l", "x"], { mode: "command", command: "x", login: true }],
    [["-l", "-c", "x"], { mode: "command", command: "x", login: true }],
    [["-i", "-c", "x"], { mode: "command", command: "x", interactive: true }],
    [["-l", "-i", "-c", "echo $PATH"], { mode: "command", command: "echo $PATH", login: true, interactive: true }],
    [["--login", "--noprofile", "--norc", "-c", "x"], { mode: "command", command: "x", login: true }],
    [["-e", "-o", "pipefail", "-c", "x", "z"], { mode: "command", command: "x", positional: ["z"] }],
    [["-O", "extglob", "+o", "histexpand", "-c", "x"], { mode: "command", command: "x" }],
    [["--rcfile", "/dev/null", "-i"], { mode: "stdin", interactive: true }],
    [["-s", "a", "b"], { mode: "stdin", positional: ["a", "b"] }],
    [[], { mode: "stdin", positional: [] }],
    [["-i"], { mode: "stdin", interactive: true }],
    [["script.sh", "-c", "x"], { mode: "script", script: "script.sh", positional: ["-c", "x"] }],
    [["--", "-script"], { mode: "script", script: "-script" }],
    [["-x", "-", "s.sh"], { mode: "script", script: "s.sh" }],
    [["--version", "-c", "rm -rf /"], { version: true }],
    [["--help"], { help: true }],
  ];
  for (const [args, want] of cases)
    test(JSON.stringify(args), () => {
      expect(parseBashArgs(args)).toMatchObject(want);
    });

  test("errors in bash's words, with the argument bash rejects alone", () => {
    for (const [args, msg, arg] of [
      [["-Z"], "-Z: invalid option", "-Z"],
      [["-lZc", "x"], "-Z: invalid option", "-Z"],
      [["-c"], "-c: option requires an argument", "-c"],
      [["-l", "-c"], "-c: option requires an argument", "-c"],
      [["--bogus"], "--bogus: invalid option", "--bogus"],
      [["--rcfile"], "--rcfile: option requires an argument", "--rcfile"],
    ] as [string[], string, string][]) {
      let err: unknown;
      try {
        parseBashArgs(args);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(BashUsageError);
      expect((err as BashUsageError).message).toBe(msg);
      expect((err as BashUsageError).arg).toBe(arg);
    }
  });

  test("zsh/sh: any single-letter option passes (the real shell in the world judges it)", () => {
    expect(parseBashArgs(["-y", "-c", "x"], { anyShort: true })).toMatchObject({ mode: "command", command: "x" });
    expect(() => parseBashArgs(["-y", "-c", "x"])).toThrow(BashUsageError);
  });

  test("the policy subject is the script itself", () => {
    expect(policySubject(parseBashArgs(["-lc", "npm test"]))).toBe("npm test");
    expect(policySubject(parseBashArgs(["./x.sh", "a b"]))).toBe("bash ./x.sh 'a b'");
  });
});

describe("root dispatcher", () => {
  test("bash forms after substrate's own flags pass on unchanged", () => {
    expect(parseRoot(["-c", "echo $0", "a0"]).bash).toEqual(["-c", "echo $0", "a0"]);
    expect(parseRoot(["--no-world", "-lc", "x"])).toMatchObject({ world: false, bash: ["-lc", "x"] });
    expect(parseRoot(["-c", "-l", "x"]).bash).toEqual(["-c", "-l", "x"]);
    expect(parseRoot(["-i"]).bash).toEqual(["-i"]);
    expect(parseRoot(["-s", "a"]).bash).toEqual(["-s", "a"]);
    expect(parseRoot(["--login", "-c", "x"]).bash).toEqual(["--login", "-c", "x"]);
    expect(parseRoot(["-o", "pipefail", "-c", "x"]).bash).toEqual(["-o", "pipefail", "-c", "x"]);
    expect(parseRoot(["--isolated", "-c", "x"])).toMatchObject({ isolated: true, cmd: "x" });
    expect(parseRoot(["world", "doctor"]).rest).toEqual(["world", "doctor"]);
    expect(parseRoot(["-h"]).help).toBe(true);
    expect(parseRoot(["-V"]).version).toBe(true);
  });
  test("shell names from argv[0]", () => {
    expect(shellNameOf("/home/u/.substrate/shims/bash")).toBe("bash");
    expect(shellNameOf("-bash")).toBe("bash");
    expect(shellNameOf("sh")).toBe("sh");
    expect(shellNameOf("/usr/local/bin/substrate")).toBeNull();
    expect(shellNameOf("bun")).toBeNull();
  });
});

describe("side channels (the agents' own wrapper text)", () => {
  test("Claude's cwd file: the wrapper's last step", () => {
    const w = `source /home/u/.claude/shell-snapshots/snapshot-bash-1768756242719-p4cllc.sh 2>/dev/null || true && shopt -u extglob 2>/dev/null || true && { \\builtin unalias -- 'unsetenv'; \\builtin unset -f -- 'unsetenv'; } >/dev/null 2>&1 || true && eval 'ls' < /dev/null && pwd -P >| /tmp/claude-1aad-cwd`;
    expect(claudeCwdFile(w)).toBe("/tmp/claude-1aad-cwd");
    expect(claudeCwdFile("eval 'x' && pwd -P >| '/tmp/a b/claude-0f-cwd'")).toBe("/tmp/a b/claude-0f-cwd");
    expect(claudeCwdFile("pwd -P >| /tmp/claude-1aad-cwd")).toBeNull(); // not the wrapper's && chain
    expect(claudeCwdFile("x && pwd -P >| /etc/passwd")).toBeNull();
    expect(claudeCwdFile("x && pwd -P >| relative/claude-1-cwd")).toBeNull();
  });
  test("Gemini's bgpids file: the wrapper's first line (gemini-cli shell.ts wrapCommandForBackgroundPIDs)", () => {
    const w = `_bgpids_file=/tmp/gemini-shell-AbC123/bgpids.tmp\n(\n  trap 'jobs -p > "$_bgpids_file"' EXIT\nnpm run dev &\n)\n__code=$?\nexit $__code`;
    expect(geminiBgpidsFile(w)).toBe("/tmp/gemini-shell-AbC123/bgpids.tmp");
    expect(geminiBgpidsFile("_bgpids_file=/etc/bgpids.tmp\n")).toBeNull();
    expect(geminiBgpidsFile("echo _bgpids_file=/tmp/gemini-shell-x/bgpids.tmp\n")).toBeNull();
  });
});

describe("the root dispatcher stays light", () => {
  /** static (not dynamic `import()`) imports of a module, transitively */
  function staticGraph(entry: string): string[] {
    const { readFileSync, existsSync } = require("node:fs") as typeof import("node:fs");
    const { dirname, resolve } = require("node:path") as typeof import("node:path");
    const seen = new Set<string>();
    const bare = new Set<string>();
    const walk = (f: string) => {
      if (seen.has(f)) return;
      seen.add(f);
      const src = readFileSync(f, "utf8");
      for (const m of src.matchAll(/^\s*import\s+(?!type\b)(?:[^'";]*?\sfrom\s+)?["']([^"']+)["']/gm)) {
        const spec = m[1]!;
        if (spec.startsWith(".")) {
          const p = resolve(dirname(f), spec);
          if (existsSync(p)) walk(p);
        } else bare.add(spec);
      }
    };
    walk(resolve(import.meta.dir, "../..", entry));
    return [...seen, ...bare];
  }
  test("main.ts and the bash entry load no zod, broker, client or pipeline before they are needed", () => {
    for (const entry of ["src/cli/main.ts", "src/cli/bash.ts"]) {
      const g = staticGraph(entry);
      for (const heavy of ["zod", "/broker/", "/api/client", "/run/", "@modelcontextprotocol", "/contract/"]) expect(g.filter((x) => x.includes(heavy))).toEqual([]);
    }
  });
});

test("argv[0] in the world: the name when PATH has the shell elsewhere than the shim dir, else its absolute path", async () => {
  const { worldArgv0 } = await import("../../src/cli/bash.ts");
  expect(worldArgv0("bash", "/bin/bash", "/home/u/.substrate/shims:/usr/bin:/bin", "/home/u/.substrate/shims/bash")).toBe("bash");
  expect(worldArgv0("bash", "/bin/bash", "/home/u/.substrate/shims", "/home/u/.substrate/shims/bash")).toBe("/bin/bash");
  expect(worldArgv0("bash", "/bin/bash", undefined, "bash")).toBe("/bin/bash");
});
