import { expect, test } from "bun:test";
import { ConfigFile } from "../../../src/contract/config.ts";
import { DEFAULT_CONFIG_FILE, effectiveConfig } from "../../../src/config.ts";

test("the hot path's default config is the schema's defaults (no config.toml: no TOML, no zod)", () => {
  expect(DEFAULT_CONFIG_FILE).toEqual(ConfigFile.parse({}));
  const cfg = effectiveConfig({ env: { HOME: "/nonexistent-home" } });
  expect(cfg.config_file).toBeNull();
  expect(cfg.file).toEqual(ConfigFile.parse({}));
});
