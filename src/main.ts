#!/usr/bin/env bun
/** Entry point when running from source (`bun src/main.ts`); builds use a generated entry. */
import { main } from "./cli/main.ts";

const code = await main(process.argv.slice(2));
process.exit(code);
