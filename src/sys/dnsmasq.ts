/**
 * `dnsmasq` (Debian `dnsmasq-base`) wrapper: version/feature probe and a long-running
 * instance we own by PID (never found or killed by name).
 *
 * The instance runs `--keep-in-foreground` with `--log-facility=-` so its log comes to us on
 * stderr. That log is also our only synchronisation point: dnsmasq applies SIGHUP (re-read
 * of `--servers-file`) asynchronously, then logs every server it now uses; callers put a
 * unique marker domain in the file and wait for its log line (see `waitForLog`).
 *
 * Traps:
 * - Without `--conf-file=X` dnsmasq also reads /etc/dnsmasq.conf; without `--pid-file=` it
 *   writes /run/dnsmasq/dnsmasq.pid, which would collide between worlds.
 * - It drops to `--user` after binding port 53 but keeps CAP_NET_ADMIN when `nftset=` is
 *   configured (measured on 2.90), which is what lets it add addresses to our nft set.
 * - It reads `--servers-file` (at start and on SIGHUP) AFTER dropping to `--user`, so the
 *   file and every directory above it must be readable/traversable by that user: a file in a
 *   root-only 0700 directory fails with "Permission denied". (Handing it over as /dev/fd/3
 *   does not work either: dnsmasq closes every inherited fd above 2 at startup.)
 */
import { readFileSync } from "node:fs";
import { inNetns, NetCommandError, netExec } from "./_netexec.ts";

export class DnsmasqError extends NetCommandError {
  override name = "DnsmasqError";
}

export interface DnsmasqInfo {
  version: string;
  /** Compile-time options, e.g. "nftset", "IPv6", "no-Lua". */
  options: string[];
  /** `filter-AAAA` exists since 2.87; `nftset=` needs the nftset compile option. */
  filterAaaa: boolean;
  nftset: boolean;
}

export const dnsmasqAvailable = (): boolean =>
  Bun.which("dnsmasq", { PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` }) !== null;

export async function dnsmasqInfo(): Promise<DnsmasqInfo> {
  const r = await netExec(["dnsmasq", "--version"]).catch((e: unknown) => {
    throw new DnsmasqError(["dnsmasq", "--version"], 127, String(e), "dnsmasq --version");
  });
  if (r.code !== 0) throw new DnsmasqError(r.argv, r.code, r.stderr, "dnsmasq --version");
  const version = /Dnsmasq version (\S+)/.exec(r.stdout)?.[1] ?? "unknown";
  const options = (/Compile time options: (.*)/.exec(r.stdout)?.[1] ?? "").trim().split(/\s+/);
  const [maj, min] = version.split(".").map((x) => Number.parseInt(x, 10));
  const filterAaaa = (maj ?? 0) > 2 || ((maj ?? 0) === 2 && (min ?? 0) >= 87);
  return { version, options, filterAaaa, nftset: options.includes("nftset") };
}

export interface DnsmasqProcess {
  /** Host PID of dnsmasq itself (nsenter execs it, so it is the PID we spawned). */
  readonly pid: number;
  readonly argv: string[];
  /** Resolves with the exit code once the process is gone. */
  readonly exited: Promise<number>;
  /** The last log lines (at most 200), for error messages. */
  log(): string[];
  /** Resolves when a log line (seen since the call, or `sinceLine`) matches; rejects on timeout or exit. */
  waitForLog(re: RegExp, timeoutMs: number, sinceLine?: number): Promise<string>;
  /** Total log lines seen so far (pass to waitForLog to avoid missing a line written meanwhile). */
  lineCount(): number;
  /** SIGHUP: re-read --servers-file, clear the cache. */
  reload(): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts `dnsmasq --keep-in-foreground --conf-file=CONF` (inside a netns when `netnsPid`).
 *
 * `worldPidns`: also join the PID namespace the world's processes live in
 * (`/proc/PID/ns/pid_for_children` of the world's unshare). dnsmasq then dies with the world
 * whatever happens to the agent: a crashed or SIGKILLed agent cannot leave a dnsmasq (and
 * with it the world's netns and veth) behind. nsenter forks for a PID namespace, so `pid`
 * is then nsenter's, which forwards no signal: stop() kills nsenter and the world's end
 * kills dnsmasq.
 */
export function spawnDnsmasq(o: {
  confFile: string;
  netnsPid?: number;
  worldPidns?: number;
  extraArgs?: string[];
}): DnsmasqProcess {
  const base = ["dnsmasq", "--keep-in-foreground", `--conf-file=${o.confFile}`, "--pid-file=", "--log-facility=-", ...(o.extraArgs ?? [])];
  const argv =
    o.worldPidns !== undefined
      ? ["nsenter", `--net=/proc/${o.worldPidns}/ns/net`, `--pid=/proc/${o.worldPidns}/ns/pid_for_children`, "--", ...base]
      : inNetns(base, o.netnsPid);
  const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  const lines: string[] = [];
  let total = 0;
  const waiters = new Set<() => void>();
  let done = false;
  // Drain stderr for the whole life of the process: a full pipe would block dnsmasq.
  void (async () => {
    let buf = "";
    for await (const chunk of proc.stderr as ReadableStream<Uint8Array>) {
      buf += new TextDecoder().decode(chunk);
      const parts = buf.split("\n");
      buf = parts.pop() ?? "";
      for (const l of parts) {
        lines.push(l);
        total++;
        if (lines.length > 200) lines.shift();
      }
      for (const w of waiters) w();
    }
  })()
    .catch(() => {})
    .finally(() => {
      done = true;
      for (const w of waiters) w();
    });

  const exited = proc.exited;
  // With worldPidns, nsenter forked dnsmasq and waits for it; signals must go to the child.
  const signal = (sig: NodeJS.Signals): void => {
    let target = proc.pid;
    if (o.worldPidns !== undefined) {
      try {
        const kids = readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
        if (kids[0]) target = Number(kids[0]);
      } catch {}
    }
    try {
      process.kill(target, sig);
    } catch {}
  };
  return {
    pid: proc.pid,
    argv,
    exited,
    log: () => [...lines],
    lineCount: () => total,
    waitForLog(re, timeoutMs, sinceLine = total) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          // Lines before `sinceLine` that already scrolled out of the window are lost; fine for our use.
          const fresh = lines.slice(Math.max(0, lines.length - (total - sinceLine)));
          const hit = fresh.find((l) => re.test(l));
          if (hit !== undefined) {
            cleanup();
            resolve(hit);
          } else if (done || proc.exitCode !== null) {
            cleanup();
            reject(new DnsmasqError(argv, proc.exitCode ?? -1, lines.slice(-10).join("\n"), "dnsmasq exited"));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new DnsmasqError(argv, -1, lines.slice(-10).join("\n"), `dnsmasq: no log line matching ${re} within ${timeoutMs} ms`));
        }, timeoutMs);
        const cleanup = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    reload: () => {
      if (proc.exitCode === null) signal("SIGHUP");
    },
    async stop(graceMs = 2000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      signal("SIGTERM");
      const inTime = await Promise.race([exited.then(() => true), Bun.sleep(graceMs).then(() => false)]);
      if (!inTime) {
        signal("SIGKILL");
        proc.kill("SIGKILL");
        await exited;
      }
    },
  };
}
