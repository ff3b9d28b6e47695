/**
 * Test topology for the world network tests. Everything lives in namespaces and links this
 * fixture creates, and goes with them:
 *
 *   world W  (unshare --net --mount; /etc/resolv.conf bind-mounted from runDir)
 *     eth0 ── sbx<hex> (host, created by setupWorldNetwork) ─┐
 *                                                            │ host routes 10.252.K.0/24 via
 *   test hosts T (unshare --net)                             │ the test link; forwarding is
 *     eth0 10.251.K.2 ── sbt<hex> 10.251.K.1 (host) ─────────┘ enabled per interface on these
 *     lo: 10.252.K.1 (DNS) .10 .11 .20 .30 .40 (HTTP 80/443/8080)  two links only (the host's
 *     v6peer fd5b:K::1 ── sbu<hex> fd5b:K::2 (moved into W)       net.ipv4.ip_forward stays 0)
 *
 * The IPv6 link W↔T is direct (no routing through the host: that would need the host's
 * global IPv6 forwarding), so a v6 connect from the world has a working path that only
 * the world's nft table can block.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ip, ipBatch, linkDelete } from "../../src/sys/ip.ts";

const BUN = join(import.meta.dir, "../../node_modules/.bin/bun");

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(argv: string[], timeoutMs = 20_000): Promise<RunResult> {
  const p = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const t = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(t);
  return { code, stdout, stderr };
}

/** Spawns and waits for a line containing "ready" on stdout; keeps draining afterwards. */
async function spawnReady(argv: string[]): Promise<{ proc: ReturnType<typeof Bun.spawn>; lines: string[] }> {
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

export interface NetFixture {
  k: number;
  hex: string;
  runDir: string;
  resolvConf: string;
  /** The world's netns/mount ns holder (the unshare process). */
  worldPid: number;
  hostsPid: number;
  net: (last: number) => string;
  dnsIp: string;
  zoneFile: string;
  dnsLog: string[];
  setZone(z: Record<string, { A?: string[]; AAAA?: string[]; ttl?: number }>): Promise<void>;
  /** Runs argv inside the world (its net + mount namespaces: sees the pinned resolv.conf). */
  inWorld(argv: string[], timeoutMs?: number): Promise<RunResult>;
  curl(url: string, extra?: string[]): Promise<RunResult>;
  dnsQuery(server: string, name: string, type: "A" | "AAAA"): Promise<{ rcode?: number; answers?: Array<{ data: string }>; error?: string }>;
  /** Enables forwarding on the world's host-side veth (a per-interface sysctl that dies with it). */
  allowForwarding(ifname: string): void;
  v6Addr: string;
  killWorld(): Promise<void>;
  close(): Promise<void>;
}

export async function createNetFixture(): Promise<NetFixture> {
  const k = 1 + Math.floor(Math.random() * 250);
  const hex = Math.floor(Math.random() * 0xffffff).toString(16).padStart(6, "0");
  const runDir = mkdtempSync(join(tmpdir(), "substrate-net-"));
  const resolvConf = join(runDir, "resolv.conf");
  writeFileSync(resolvConf, "nameserver 127.0.0.53\noptions edns0 trust-ad\n");
  const net = (last: number): string => `10.252.${k}.${last}`;
  const testLink = `sbt${hex}`;
  const v6Link = `sbu${hex}`;
  const zoneFile = join(runDir, "zone.json");
  const procs: Array<ReturnType<typeof Bun.spawn>> = [];
  let world: ReturnType<typeof Bun.spawn> | undefined;

  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  const close = async (): Promise<void> => {
    for (const p of procs.reverse()) {
      p.kill("SIGKILL");
      await p.exited;
    }
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
    rmSync(runDir, { recursive: true, force: true });
  };

  try {
    // World: own net + mount namespace, resolv.conf pinned like the real rootfs builder does.
    const w = await spawnReady([
      "unshare", "--net", "--mount", "--propagation", "private", "--fork", "--kill-child", "--",
      "sh", "-c", 'mount --bind "$1" /etc/resolv.conf && echo ready && exec sleep infinity', "sh", resolvConf,
    ]);
    world = w.proc;
    procs.push(world);
    const worldPid = world.pid;

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
    writeFileSync(`/proc/sys/net/ipv4/conf/${testLink}/forwarding`, "1");
    await ipBatch(
      [
        "link set lo up",
        `addr add 10.251.${k}.2/30 dev eth0`,
        "link set eth0 up",
        `route add default via 10.251.${k}.1`,
        ...[1, 10, 11, 20, 30, 40].map((n) => `addr add ${net(n)}/32 dev lo`),
      ],
      { netnsPid: hostsPid },
    );
    // Direct IPv6 link world <-> test hosts.
    cleanups.push(() => linkDelete(v6Link));
    await ipBatch([`link add ${v6Link} type veth peer name v6peer netns ${hostsPid}`, `link set ${v6Link} netns ${worldPid}`]);
    await ipBatch(["link set v6peer up", `addr add fd5b:${k}::1/64 dev v6peer nodad`], { netnsPid: hostsPid });
    await ipBatch(["link set lo up", `link set ${v6Link} up`, `addr add fd5b:${k}::2/64 dev ${v6Link} nodad`], { netnsPid: worldPid });

    const nsHosts = ["nsenter", `--net=/proc/${hostsPid}/ns/net`, "--"];
    writeFileSync(zoneFile, "{}");
    const dns = await spawnReady([...nsHosts, BUN, join(import.meta.dir, "_dns-server.ts"), net(1), zoneFile]);
    procs.push(dns.proc);
    const http = await spawnReady([...nsHosts, BUN, join(import.meta.dir, "_http-server.ts"), "80", "443", "8080"]);
    procs.push(http.proc);

    const inWorld = (argv: string[], timeoutMs?: number): Promise<RunResult> =>
      run(["nsenter", `--target=${worldPid}`, "--net", "--mount", "--", ...argv], timeoutMs);
    return {
      k,
      hex,
      runDir,
      resolvConf,
      worldPid,
      hostsPid,
      net,
      dnsIp: net(1),
      zoneFile,
      dnsLog: dns.lines,
      v6Addr: `fd5b:${k}::1`,
      async setZone(z) {
        writeFileSync(zoneFile, JSON.stringify(z));
        const n = dns.lines.filter((l) => l === "reloaded").length;
        dns.proc.kill("SIGHUP");
        for (let i = 0; i < 200 && dns.lines.filter((l) => l === "reloaded").length === n; i++) await Bun.sleep(10);
      },
      inWorld,
      curl: (url, extra = []) => inWorld(["curl", "-sS", "--max-time", "10", ...extra, url]),
      async dnsQuery(server, name, type) {
        const r = await inWorld([BUN, join(import.meta.dir, "_dns-query.ts"), server, name, type]);
        return JSON.parse(r.stdout.trim().split("\n").pop() || '{"error":"no output"}');
      },
      allowForwarding(ifname) {
        writeFileSync(`/proc/sys/net/ipv4/conf/${ifname}/forwarding`, "1");
      },
      async killWorld() {
        world?.kill("SIGKILL");
        await world?.exited;
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Host-wide snapshot the tests compare before/after: the host ruleset and forwarding sysctl. */
export async function hostSnapshot(): Promise<{ ruleset: string; ipForward: string; links: string[] }> {
  const { nftListRuleset } = await import("../../src/sys/nft.ts");
  const links = (await ip(["-o", "link", "show"])).split("\n").map((l) => l.split(":")[1]?.trim() ?? "").filter(Boolean);
  return {
    ruleset: await nftListRuleset(),
    ipForward: (await Bun.file("/proc/sys/net/ipv4/ip_forward").text()).trim(),
    links: links.map((l) => l.split("@")[0]!).sort(),
  };
}
