/**
 * `substrate policy init|validate|show|reload` (spec "CLI UX Additions"; issue 4).
 * Invalid policies print every problem (file, field path, expected) and exit 2.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { defineCommand } from "citty";
import {
  BUILTIN_DEFAULT,
  compileText,
  DEFAULT_POLICY_YAML,
  findProfile,
  loadEffectivePolicySync,
  parsePolicyText,
  policiesDir,
  PolicyError,
  projectDirFor,
  recordProjectPolicy,
  RELOAD_STAMP,
  type CompiledPolicy,
  type LoadedPolicy,
} from "../broker/index.ts";
import { PolicyId } from "../contract/policy.ts";
import { CliError, ExitCode } from "./_errors.ts";
import { getGlobals } from "./_globals.ts";

const POLICY_FILE = /\.(ya?ml|toml)$/;

function rulesCount(p: CompiledPolicy): number {
  const c = p.doc.commands;
  return c.allowed.length + c.denied.length + c.isolated.length + c.require_approval.length + p.doc.approval.auto_approve.length;
}
function examplesCount(p: CompiledPolicy): number {
  const e = p.doc.examples;
  return e ? e.deny.length + e.allow.length + e.isolate.length + e.approve.length : 0;
}

/** Validate one file; prints ok or the errors; returns success. */
function validateFile(file: string, cwd: string): boolean {
  try {
    const text = readFileSync(file, "utf8");
    // a draft outside ~/.substrate/policies may carry any id; inside, the id must match the file name
    const inPolicies = resolve(dirname(file)) === resolve(policiesDir());
    const p = compileText(text, file, { home: process.env.HOME ?? "/", project: projectDirFor(cwd) }, inPolicies);
    console.log(`ok: ${file} (policy ${p.id}, mode ${p.mode}, ${rulesCount(p)} rules, ${examplesCount(p)} self-tests passed)`);
    return true;
  } catch (e) {
    if (e instanceof PolicyError) {
      process.stderr.write(`${e.format()}\n`);
      return false;
    }
    if ((e as NodeJS.ErrnoException).code === "ENOENT") {
      process.stderr.write(`substrate: ${file}: no such file\n`);
      return false;
    }
    throw e;
  }
}

function policyFiles(): string[] {
  const dir = policiesDir();
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => POLICY_FILE.test(f) && !f.startsWith("."))
    .sort()
    .map((f) => join(dir, f));
}

const init = defineCommand({
  meta: { name: "init", description: "Write the default policy (the spec's example, mode: observe) to ~/.substrate/policies/<ID>.yaml for editing" },
  args: {
    id: { type: "positional", required: false, description: "policy id (default: default)", valueHint: "ID" },
    force: { type: "boolean", description: "overwrite an existing file" },
  },
  run({ args }) {
    const id = (args.id as string | undefined) ?? "default";
    if (!PolicyId.safeParse(id).success) throw new CliError(ExitCode.USAGE, `"${id}" is not a policy id`, "use lowercase letters, digits and '-'");
    const dir = policiesDir();
    const file = join(dir, `${id}.yaml`);
    if (existsSync(file) && !args.force) throw new CliError(ExitCode.USAGE, `${file} already exists`, "edit it, or pass --force to overwrite it");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const text =
      id === "default" ? DEFAULT_POLICY_YAML : DEFAULT_POLICY_YAML.replace("policies/default.yaml", `policies/${id}.yaml`).replace(/^id: default$/m, `id: ${id}`);
    writeFileSync(file, text, { mode: 0o600 });
    chmodSync(file, 0o600);
    console.log(`wrote ${file} (mode: observe; set mode: enforce to block)`);
    console.log(`check it with: substrate policy validate ${file}`);
  },
});

const validate = defineCommand({
  meta: { name: "validate", description: "Check a policy file (or every policy in ~/.substrate/policies and the one in force here) against the schema and its self-tests" },
  args: { file: { type: "positional", required: false, description: "policy file (.yaml, .yml, .toml)", valueHint: "FILE" } },
  run({ args }) {
    const cwd = process.cwd();
    const file = args.file as string | undefined;
    let ok = true;
    if (file) ok = validateFile(file, cwd);
    else {
      for (const f of policyFiles()) ok = validateFile(f, cwd) && ok;
      try {
        const l = loadEffectivePolicySync(cwd, { record: false });
        console.log(`in force here: ${l.policy.id} (${l.source.file}; selected by ${selectedBy(l)})`);
        if (l.source.selection.ignored_profile) console.log(`ignored: ${ignoredLine(l)}`);
      } catch (e) {
        if (!(e instanceof PolicyError)) throw e;
        if (!policyFiles().includes(e.file)) process.stderr.write(`${e.format()}\n`);
        ok = false;
      }
    }
    if (!ok) process.exitCode = ExitCode.USAGE;
  },
});

/** Where each field of the effective policy came from: the file or a schema default. */
function provenance(raw: unknown, doc: Record<string, unknown>, fileLabel: string): Record<string, string> {
  const out: Record<string, string> = {};
  const r = (raw ?? {}) as Record<string, unknown>;
  for (const [k, v] of Object.entries(doc)) {
    const inFile = k in r;
    if (v && typeof v === "object" && !Array.isArray(v)) {
      const sub = (inFile ? r[k] : {}) as Record<string, unknown>;
      for (const k2 of Object.keys(v)) out[`${k}.${k2}`] = sub && k2 in sub ? fileLabel : "default";
    } else out[k] = inFile ? fileLabel : "default";
  }
  return out;
}

/** Where the selection came from (issue 14 item 4), one line. */
function selectedBy(l: LoadedPolicy): string {
  const s = l.source.selection;
  const prof = l.source.profile_file;
  switch (s.via) {
    case "recorded": {
      const how =
        s.recorded_via === "policy_use"
          ? "`substrate policy use`"
          : s.recorded_via === "tightened"
            ? `a stricter policy named by ${prof ?? ".substrate-profile"}`
            : `first use, ${prof ? `from ${prof}` : "no .substrate-profile: default"}`;
      return `the host-side record for ${s.project} (${s.record_file}; ${how}, ${s.recorded_at})`;
    }
    case "first_use":
      return `${prof ?? "no .substrate-profile: default"} (recorded now for ${s.project} in ${s.record_file})`;
    case "tightened":
      return `${prof} (stricter than the recorded policy; recorded for ${s.project})`;
    case "unrecorded":
      return `${prof ?? "no .substrate-profile: default"} (not recorded yet: the first command here records it for its project)`;
  }
}

function ignoredLine(l: LoadedPolicy): string {
  const i = l.source.selection.ignored_profile!;
  return `${i.file} names "${i.id}": ${i.why}; a project file may only tighten the policy (\`substrate policy use ${i.id}\` switches)`;
}

const use = defineCommand({
  meta: {
    name: "use",
    description: "Record which policy this project uses (host-side in ~/.substrate/projects/; a .substrate-profile in the project can only tighten it)",
  },
  args: { id: { type: "positional", required: true, description: "policy id", valueHint: "ID" } },
  run({ args }) {
    const id = args.id as string;
    if (!PolicyId.safeParse(id).success) throw new CliError(ExitCode.USAGE, `"${id}" is not a policy id`, "use lowercase letters, digits and '-'");
    try {
      const r = recordProjectPolicy(process.cwd(), id);
      console.log(`recorded: ${r.project} uses policy ${id}${r.previous !== null && r.previous !== id ? ` (was ${r.previous})` : ""} — ${r.file}`);
      let prof: { id: string; file: string } | null = null;
      try {
        prof = findProfile(process.cwd());
      } catch {
        // a broken profile is ignored anyway
      }
      if (prof && prof.id !== id)
        console.log(`note: ${prof.file} names "${prof.id}": while it does, it applies instead whenever it is at least as strict as "${id}"`);
    } catch (e) {
      if (!(e instanceof PolicyError)) throw e;
      process.stderr.write(`${e.format()}\n`);
      process.exitCode = ExitCode.USAGE;
    }
  },
});

const show = defineCommand({
  meta: { name: "show", description: "Print the effective policy for this directory and where each part came from" },
  args: { json: { type: "boolean", description: "print JSON" } },
  run({ args }) {
    const cwd = process.cwd();
    let l;
    try {
      l = loadEffectivePolicySync(cwd, { record: false }); // showing never records
    } catch (e) {
      if (!(e instanceof PolicyError)) throw e;
      process.stderr.write(`${e.format()}\n`);
      process.exitCode = ExitCode.USAGE;
      return;
    }
    const raw = parsePolicyText(l.source.file === BUILTIN_DEFAULT ? DEFAULT_POLICY_YAML : readFileSync(l.source.file, "utf8"), l.source.file);
    const prov = provenance(raw, l.policy.doc as unknown as Record<string, unknown>, l.source.file === BUILTIN_DEFAULT ? "builtin" : "file");
    const info = {
      policy: l.policy.doc,
      source: l.source,
      commit: l.commit,
      project: l.policy.project,
      provenance: prov,
    };
    if (args.json || getGlobals().json) {
      console.log(JSON.stringify(info, null, 2));
      return;
    }
    const lines = [
      `# policy:      ${l.policy.id} (${l.policy.doc.name})`,
      `# mode:        ${l.policy.mode}`,
      `# file:        ${l.source.file}`,
      `# selected by: ${selectedBy(l)}`,
      ...(l.source.selection.ignored_profile ? [`# ignored:     ${ignoredLine(l)}`] : []),
      `# $PROJECT:    ${l.policy.project}`,
      `# commit:      ${l.commit}`,
      `# from schema defaults: ${Object.entries(prov).filter(([, v]) => v === "default").map(([k]) => k).join(", ") || "(none)"}`,
      Bun.YAML.stringify(l.policy.doc, null, 2),
    ];
    console.log(lines.join("\n"));
  },
});

const reload = defineCommand({
  meta: { name: "reload", description: "Validate every policy and make running sessions reload them now (in addition to the file watcher)" },
  run() {
    const cwd = process.cwd();
    const files = policyFiles();
    let ok = true;
    for (const f of files) ok = validateFile(f, cwd) && ok;
    if (!ok) {
      process.stderr.write("substrate: not reloading: running sessions keep their last good policy; fix the errors above\n");
      process.exitCode = ExitCode.USAGE;
      return;
    }
    const dir = policiesDir();
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // watchers (PolicyBroker) react to any change in the directory
    writeFileSync(join(dir, RELOAD_STAMP), `${new Date().toISOString()}\n`, { mode: 0o600 });
    console.log(`reloaded: ${files.length} polic${files.length === 1 ? "y" : "ies"} valid; running sessions use them for their next command`);
  },
});

export default defineCommand({
  meta: { name: "policy", description: "Policies: init, validate, show, use, reload" },
  subCommands: { init, validate, show, use, reload },
});
