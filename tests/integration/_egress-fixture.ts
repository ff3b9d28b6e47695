/**
 * Test topology for the egress tests. Everything lives in namespaces and links this fixture
 * creates, and goes with them:
 *
 *   agent (host netns): the gateway dials from here; a route 10.252.K.0/24 via the test link
 *   test hosts T (unshare --net)
 *     eth0 10.251.K.2 ── sbt<hex> 10.251.K.1 (host)
 *     lo: 10.252.K.1 (DNS)  .10 .11 .20 .30 (the upstream: HTTP 80/8080, HTTPS 443, SSH-like 22, echo 7000)
 *
 * No forwarding is enabled anywhere: the gateway runs in the host netns and originates the
 * connections itself. A bare "world" (unshare --net --mount, resolv.conf bind-mounted) is
 * available for tests of the gateway + helper without a full World.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ip, ipBatch, linkDelete } from "../../src/sys/ip.ts";

export const BUN = join(import.meta.dir, "../../node_modules/.bin/bun");

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function run(argv: string[], o: { timeoutMs?: number; env?: Record<string, string>; stdin?: string } = {}): Promise<RunResult> {
  const p = Bun.spawn(argv, { stdin: o.stdin === undefined ? "ignore" : new TextEncoder().encode(o.stdin), stdout: "pipe", stderr: "pipe", ...(o.env ? { env: o.env } : {}) });
  const t = setTimeout(() => p.kill("SIGKILL"), o.timeoutMs ?? 30_000);
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(t);
  return { code, stdout, stderr };
}

/** Spawns and waits for a line containing "ready" on stdout; keeps draining afterwards. */
export async function spawnReady(argv: string[]): Promise<{ proc: ReturnType<typeof Bun.spawn>; lines: string[] }> {
  const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const lines: string[] = [];
  let seenReady!: () => void;
  const ready = new Promise<void>((r) => (seenReady = r));
  void (async () => {
    let buf = "";
    for await (const c of proc.stdout as ReadableStream<Uint8Array>) {
      buf += new TextDecoder().decode(c);
      const parts = buf.split("\n");
      buf = parts.pop() ?? "";
      for (const l of parts) {
        lines.push(l);
        if (l.includes("ready")) seenReady();
      }
    }
  })().catch(() => {});
  const died = proc.exited.then(async () => {
    throw new Error(`${argv.join(" ")} exited early: ${await new Response(proc.stderr as ReadableStream).text()}`);
  });
  await Promise.race([ready, died, Bun.sleep(15_000).then(() => Promise.reject(new Error(`${argv.join(" ")}: not ready`)))]);
  return { proc, lines };
}

export type Zone = Record<string, { A?: string[]; AAAA?: string[]; ttl?: number }>;

export interface EgressFixture {
  k: number;
  dir: string;
  net: (last: number) => string;
  /** The private range the test hosts live in (an address rule must name it). */
  cidr: string;
  dnsIp: string;
  dnsLog: string[];
  hostsPid: number;
  /** PEM of the test CA (world-readable file). */
  caFile: string;
  /** Static dir served under /static/ (a dumb-HTTP git repo is at /static/repo.git). */
  staticDir: string;
  setZone(z: Zone): Promise<void>;
  close(): Promise<void>;
}

export async function createEgressFixture(o: { names?: string[] } = {}): Promise<EgressFixture> {
  const k = 1 + Math.floor(Math.random() * 250);
  const hex = Math.floor(Math.random() * 0xffffff).toString(16).padStart(6, "0");
  const dir = mkdtempSync(join(tmpdir(), "substrate-egress-fx-"));
  chmodSync(dir, 0o755);
  const net = (last: number): string => `10.252.${k}.${last}`;
  const testLink = `sbt${hex}`;
  const zoneFile = join(dir, "zone.json");
  const procs: Array<ReturnType<typeof Bun.spawn>> = [];
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  const close = async (): Promise<void> => {
    for (const p of procs.reverse()) {
      p.kill("SIGKILL");
      await p.exited;
    }
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // Test CA + a server certificate for the test names.
    const names = o.names ?? ["allowed.test", "*.wild.test", "other.test"];
    const sh = async (cmd: string) => {
      const r = await run(["sh", "-c", cmd]);
      if (r.code !== 0) throw new Error(`${cmd}: ${r.stderr}`);
    };
    const san = names.map((n) => `DNS:${n}`).join(",");
    await sh(
      [
        `cd ${dir}`,
        `openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=substrate-test-ca 2>/dev/null`,
        `openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=${names[0]} 2>/dev/null`,
        `printf 'subjectAltName=${san}\\n' > ext.cnf`,
        `openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext.cnf 2>/dev/null`,
        "chmod 644 ca.pem",
      ].join(" && "),
    );
    // A dumb-HTTP git repository.
    const staticDir = join(dir, "static");
    mkdirSync(staticDir);
    await sh(
      [
        `cd ${dir}`,
        "git init -q src",
        "cd src && git -c user.email=t@t -c user.name=t commit -q --allow-empty -m first && echo hello > f && git add f && git -c user.email=t@t -c user.name=t commit -q -m second && cd ..",
        `git clone -q --bare src ${staticDir}/repo.git`,
        `git -C ${staticDir}/repo.git update-server-info`,
      ].join(" && "),
    );

    const hosts = await spawnReady(["unshare", "--net", "--fork", "--kill-child", "--", "sh", "-c", "echo ready; exec sleep infinity"]);
    procs.push(hosts.proc);
    const hostsPid = hosts.proc.pid;
    cleanups.push(() => linkDelete(testLink));
    await ipBatch([
      `link add ${testLink} type veth peer name eth0 netns ${hostsPid}`,
      `addr add 10.251.${k}.1/30 dev ${testLink}`,
      `link set ${testLink} up`,
      `route add 10.252.${k}.0/24 via 10.251.${k}.2 dev ${testLink}`,
    ]);
    await ipBatch(
      [
        "link set lo up",
        `addr add 10.251.${k}.2/30 dev eth0`,
        "link set eth0 up",
        `route add default via 10.251.${k}.1`,
        ...[1, 10, 11, 20, 30].map((n) => `addr add ${net(n)}/32 dev lo`),
      ],
      { netnsPid: hostsPid },
    );
    const nsHosts = ["nsenter", `--net=/proc/${hostsPid}/ns/net`, "--"];
    writeFileSync(zoneFile, "{}");
    const dns = await spawnReady([...nsHosts, BUN, join(import.meta.dir, "_dns-server.ts"), net(1), zoneFile]);
    procs.push(dns.proc);
    const up = await spawnReady([...nsHosts, BUN, join(import.meta.dir, "_egress-upstream.ts"), join(dir, "srv.pem"), join(dir, "srv.key"), staticDir]);
    procs.push(up.proc);
    return {
      k,
      dir,
      net,
      cidr: `10.252.${k}.0/24`,
      dnsIp: net(1),
      dnsLog: dns.lines,
      hostsPid,
      caFile: join(dir, "ca.pem"),
      staticDir,
      async setZone(z) {
        writeFileSync(zoneFile, JSON.stringify(z));
        const n = dns.lines.filter((l) => l === "reloaded").length;
        dns.proc.kill("SIGHUP");
        for (let i = 0; i < 200 && dns.lines.filter((l) => l === "reloaded").length === n; i++) await Bun.sleep(10);
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/** A bare world: own net + mount namespace, resolv.conf pinned like rootfs.ts does. */
export async function createBareWorld(resolvConf: string): Promise<{ pid: number; inWorld(argv: string[], o?: { env?: Record<string, string>; timeoutMs?: number }): Promise<RunResult>; close(): Promise<void> }> {
  const w = await spawnReady([
    "unshare", "--net", "--mount", "--propagation", "private", "--fork", "--kill-child", "--",
    "sh", "-c", 'mount --bind "$1" /etc/resolv.conf && echo ready && exec sleep infinity', "sh", resolvConf,
  ]);
  return {
    pid: w.proc.pid,
    inWorld: (argv, o = {}) => run(["nsenter", `--target=${w.proc.pid}`, "--net", "--mount", "--", ...argv], { ...o, env: { PATH: "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", HOME: "/tmp", ...o.env } }),
    async close() {
      w.proc.kill("SIGKILL");
      await w.proc.exited;
    },
  };
}

/** Host-wide state the tests compare before/after: the host ruleset, forwarding sysctls, links. */
export async function hostSnapshot(): Promise<{ ruleset: string; sysctls: string; links: string[] }> {
  const { nftListRuleset } = await import("../../src/sys/nft.ts");
  const links = (await ip(["-o", "link", "show"])).split("\n").map((l) => l.split(":")[1]?.trim() ?? "").filter(Boolean);
  const keys = ["net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding", "net/ipv4/conf/default/forwarding", "net/ipv4/conf/all/route_localnet", "net/ipv6/conf/all/forwarding", "net/ipv4/ip_unprivileged_port_start"];
  const sysctls = (await Promise.all(keys.map(async (k) => `${k}=${(await Bun.file(`/proc/sys/${k}`).text()).trim()}`))).join("\n");
  return { ruleset: await nftListRuleset(), sysctls, links: links.map((l) => l.split("@")[0]!).sort() };
}

/**
 * Host PIDs of a world's egress helper: processes running `__egress` in the same network
 * namespace as the world's own processes (found by world id). Leak checks; never used to kill.
 */
export function egressHelperPids(worldId: string): number[] {
  const { readdirSync, readFileSync, readlinkSync } = require("node:fs") as typeof import("node:fs");
  const ns = (p: string | number): string | null => {
    try {
      return readlinkSync(`/proc/${p}/ns/net`);
    } catch {
      return null;
    }
  };
  const cmd = (p: string): string => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, "utf8");
    } catch {
      return "";
    }
  };
  const procs = readdirSync("/proc").filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid);
  const worldNs = new Set(procs.filter((p) => cmd(p).includes(worldId)).map(ns).filter((x): x is string => x !== null && x !== ns("self")));
  return procs.filter((p) => cmd(p).includes("__egress") && worldNs.has(ns(p) ?? "")).map(Number);
}
