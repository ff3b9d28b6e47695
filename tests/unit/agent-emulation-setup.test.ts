/** Issue 16: `substrate agent setup` write / undo (byte-identical), idempotence, status; `substrate run`'s env. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AGENTS, agentSetups, ensureShellShims, statusOf, undoSetup, writeSetup, type SetupCtx } from "../../src/cli/agent-setups.ts";
import { launchEnv } from "../../src/cli/run-program.ts";

let home: string;
let ctx: SetupCtx;
beforeAll(() => {
  home = mkdtempSync(join(tmpdir(), "substrate-agent-setup-"));
  ctx = { home, substrateDir: join(home, ".substrate"), shimDir: join(home, ".substrate", "shims"), substrate: ["/usr/local/bin/substrate"] };
});
afterAll(() => rmSync(home, { recursive: true, force: true }));

const setupOf = (a: string) => agentSetups(ctx).find((s) => s.agent === a)!;

describe("agent setup --write / --undo", () => {
  const originals: Record<string, string | null> = {
    claude: `{\n    "model": "opus",\n    "env": {"FOO": "1"}\n}`, // odd indentation, no trailing newline: must come back byte for byte
    gemini: null, // no file at all before
    codex: `model = "o3"\n# my comment\n`,
    goose: `# my profile\nexport X=1`,
  };
  for (const [agent, original] of Object.entries(originals))
    test(`${agent}: write applies the setting, a second write changes nothing, undo restores the exact bytes`, () => {
      const s = setupOf(agent);
      if (original !== null) {
        mkdirSync(join(s.file!, ".."), { recursive: true });
        writeFileSync(s.file!, original);
      } else rmSync(s.file!, { force: true });
      expect(statusOf(s).routed).toBe(false);
      expect(writeSetup(ctx, s).changed).toBe(true);
      const once = readFileSync(s.file!, "utf8");
      expect(statusOf(s).routed).toBe(true);
      expect(writeSetup(ctx, s).changed).toBe(false);
      expect(readFileSync(s.file!, "utf8")).toBe(once);
      expect(undoSetup(ctx, s).changed).toBe(true);
      if (original === null) expect(existsSync(s.file!)).toBe(false);
      else expect(readFileSync(s.file!, "utf8")).toBe(original);
      expect(statusOf(s).routed).toBe(false);
    });

  test("the settings themselves", () => {
    const claude = setupOf("claude");
    const c = JSON.parse(claude.apply!(null));
    expect(c.env.CLAUDE_CODE_SHELL).toBe(join(ctx.shimDir, "bash"));
    expect(c.env.CLAUDE_CODE_SHELL).toContain("bash"); // Claude accepts a path only if it contains bash or zsh
    const g = JSON.parse(setupOf("gemini").apply!(null));
    expect(g.mcpServers.substrate).toEqual({ command: "/usr/local/bin/substrate", args: ["mcp"] });
    expect(Object.keys(g.mcpServers)[0]).not.toContain("_"); // Gemini splits FQNs at the first _
    expect(g.tools.exclude).toContain("run_shell_command");
    expect(setupOf("codex").apply!("")).toContain('[mcp_servers.substrate]\ncommand = "/usr/local/bin/substrate"\nargs = ["mcp"]');
    expect(setupOf("goose").apply!("")).toContain(`export GOOSE_SHELL='${join(ctx.shimDir, "bash")}'`);
    expect(setupOf("aider").apply!("")).toContain(`alias aider=''\\''/usr/local/bin/substrate'\\'' run -- aider'`);
    expect(setupOf("openhands").file).toBeNull();
    expect(agentSetups(ctx).map((s) => s.agent)).toEqual([...AGENTS]);
  });

  test("undo after the user edited the file removes only our setting", () => {
    const s = setupOf("claude");
    writeFileSync(s.file!, `{"model":"opus"}`);
    writeSetup(ctx, s);
    const edited = JSON.parse(readFileSync(s.file!, "utf8"));
    edited.theme = "dark";
    writeFileSync(s.file!, JSON.stringify(edited));
    undoSetup(ctx, s);
    expect(JSON.parse(readFileSync(s.file!, "utf8"))).toEqual({ model: "opus", theme: "dark" });
  });

  test("codex: a config with its own [mcp_servers.substrate] table is refused (duplicate TOML table), untouched", () => {
    const s = setupOf("codex");
    writeFileSync(s.file!, '[mcp_servers.substrate]\ncommand = "other"\n');
    expect(() => writeSetup(ctx, s)).toThrow(/mcp_servers.substrate/);
    expect(readFileSync(s.file!, "utf8")).toBe('[mcp_servers.substrate]\ncommand = "other"\n');
    rmSync(s.file!);
  });

  test("a config that is not JSON is refused, untouched", () => {
    const s = setupOf("claude");
    writeFileSync(s.file!, "{ not json");
    expect(() => writeSetup(ctx, s)).toThrow(/settings.json/);
    expect(readFileSync(s.file!, "utf8")).toBe("{ not json");
  });
});

test("shell shims: links named bash and sh to the binary (argv[0] = the shell name); idempotent", () => {
  expect(ensureShellShims(ctx).length).toBe(2);
  expect(lstatSync(join(ctx.shimDir, "bash")).isSymbolicLink()).toBe(true);
  expect(readlinkSync(join(ctx.shimDir, "bash"))).toBe("/usr/local/bin/substrate");
  expect(ensureShellShims(ctx)).toEqual([]);
});

test("substrate run's env: SHELL the shim, the shim dir first on PATH (once), SUBSTRATE_AGENT_ID", () => {
  const e = launchEnv({ PATH: `/usr/bin:${ctx.shimDir}:/bin`, FOO: "x" }, ctx.shimDir, "aider");
  expect(e.SHELL).toBe(join(ctx.shimDir, "bash"));
  expect(e.PATH).toBe(`${ctx.shimDir}:/usr/bin:/bin`);
  expect(e.SUBSTRATE_AGENT_ID).toBe("aider");
  expect(e.FOO).toBe("x");
});
