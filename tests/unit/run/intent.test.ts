import { describe, expect, test } from "bun:test";
import { commandLine, shellScript } from "../../../src/run/intent.ts";

describe("commandLine: what the policy and the trace see", () => {
  test("a -c string as given", () => expect(commandLine({ cmd: "rm -rf /" })).toBe("rm -rf /"));
  test("a shell's -c forms: the script, never the wrapper", () => {
    expect(shellScript(["bash", "-c", "rm -rf /"])).toBe("rm -rf /");
    expect(shellScript(["/bin/bash", "-lc", "echo ok"])).toBe("echo ok");
    expect(shellScript(["bash", "-c", "-l", "echo ok"])).toBe("echo ok");
    expect(shellScript(["bash", "-l", "-i", "-c", "echo $0 $1", "a0", "a1"])).toBe("echo $0 $1");
    expect(shellScript(["bash", "-o", "pipefail", "-ec", "false | true"])).toBe("false | true");
    expect(shellScript(["sh", "--norc", "-c", "x"])).toBe("x");
    expect(commandLine({ argv: ["bash", "-c", "sudo id"] })).toBe("sudo id");
  });
  test("no -c: a script file or an interactive shell is quoted as an argv", () => {
    expect(shellScript(["bash", "script.sh", "-c"])).toBeNull();
    expect(shellScript(["bash", "-i"])).toBeNull();
    expect(commandLine({ argv: ["bash", "-i"] })).toBe("bash -i");
    expect(commandLine({ argv: ["git", "commit", "-m", "it's"] })).toBe("git commit -m 'it'\\''s'");
    expect(commandLine({ argv: ["python3", "-c", "print(1)"] })).toBe("python3 -c 'print(1)'");
  });
});
