/**
 * Typed wrapper for `systemctl` (system manager only, never `--user`). Every call returns a
 * typed result or throws SystemctlError carrying the command line and stderr.
 *
 * Traps:
 * - Without systemd as PID 1 every verb fails with "System has not been booted with systemd
 *   as init system". sd_booted(3) says: systemd runs iff /run/systemd/system exists — ask
 *   `booted()` first and pick another lifecycle instead of parsing that message.
 * - `is-active` / `is-enabled` exit non-zero for "inactive"/"disabled": that is an answer,
 *   not an error; they are parsed, never thrown.
 * - `show` of an unknown unit succeeds with LoadState=not-found.
 * - `enable` of a unit file written a moment ago needs `daemon-reload` first, or systemd
 *   acts on its cached (old or missing) copy.
 */
import { existsSync } from "node:fs";

export class SystemctlError extends Error {
  override name = "SystemctlError";
  constructor(
    readonly argv: string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`${argv.join(" ")} failed${exitCode === null ? "" : ` (exit ${exitCode})`}: ${stderr.trim().split("\n").slice(-3).join(" | ") || "no output"}`);
  }
}

export interface SystemctlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `systemctl show` properties we read (values as systemd prints them). */
export interface UnitProperties {
  Id: string;
  LoadState: string;
  ActiveState: string;
  SubState: string;
  UnitFileState: string;
  /** Changes on every start of the unit: equal before/after = it was not restarted. */
  InvocationID: string;
  MainPID: number;
  /** Microseconds since the epoch (0 = never). */
  ActiveEnterTimestampMonotonic: number;
  NRestarts: number;
}

const SHOW_PROPS = ["Id", "LoadState", "ActiveState", "SubState", "UnitFileState", "InvocationID", "MainPID", "ActiveEnterTimestampMonotonic", "NRestarts"];

/** sd_booted(3): is systemd PID 1 on this machine? */
export const systemdBooted = (root = "/"): boolean => existsSync(`${root === "/" ? "" : root}/run/systemd/system`);

export class Systemctl {
  constructor(private readonly bin = "systemctl") {}

  available(): boolean {
    return Bun.which(this.bin, { PATH: `${process.env.PATH ?? ""}:/usr/bin:/bin:/usr/sbin:/sbin` }) !== null;
  }

  /** Runs systemctl; never throws for a non-zero exit (see `check`). */
  run(args: string[]): SystemctlResult {
    const argv = [this.bin, ...args];
    let r;
    try {
      r = Bun.spawnSync(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, SYSTEMD_PAGER: "", SYSTEMD_COLORS: "0" } });
    } catch (e) {
      throw new SystemctlError(argv, null, (e as Error).message);
    }
    return { code: r.exitCode ?? 1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
  }

  /** Runs and throws SystemctlError on a non-zero exit. */
  check(args: string[]): SystemctlResult {
    const r = this.run(args);
    if (r.code !== 0) throw new SystemctlError([this.bin, ...args], r.code, r.stderr || r.stdout);
    return r;
  }

  daemonReload(): void {
    this.check(["daemon-reload"]);
  }
  enable(unit: string, now = false): void {
    this.check(["enable", ...(now ? ["--now"] : []), unit]);
  }
  start(...units: string[]): void {
    this.check(["start", ...units]);
  }
  stop(...units: string[]): void {
    this.check(["stop", ...units]);
  }
  restart(...units: string[]): void {
    this.check(["restart", ...units]);
  }

  /** "active", "inactive", "failed", "activating", … (never throws for a state). */
  isActive(unit: string): string {
    return this.run(["is-active", unit]).stdout.trim() || "unknown";
  }
  /** "enabled", "disabled", "static", "not-found", … */
  isEnabled(unit: string): string {
    const r = this.run(["is-enabled", unit]);
    return r.stdout.trim() || (/not found|No such file/i.test(r.stderr) ? "not-found" : "unknown");
  }

  show(unit: string): UnitProperties {
    const r = this.check(["show", "--no-pager", `--property=${SHOW_PROPS.join(",")}`, unit]);
    return parseShow(r.stdout);
  }
}

/** Parses `systemctl show --property=…` of one unit. */
export function parseShow(out: string): UnitProperties {
  const kv = new Map<string, string>();
  for (const line of out.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) kv.set(line.slice(0, i), line.slice(i + 1));
  }
  const s = (k: string) => kv.get(k) ?? "";
  const n = (k: string) => Number(kv.get(k) ?? "0") || 0;
  return {
    Id: s("Id"),
    LoadState: s("LoadState"),
    ActiveState: s("ActiveState"),
    SubState: s("SubState"),
    UnitFileState: s("UnitFileState"),
    InvocationID: s("InvocationID"),
    MainPID: n("MainPID"),
    ActiveEnterTimestampMonotonic: n("ActiveEnterTimestampMonotonic"),
    NRestarts: n("NRestarts"),
  };
}
