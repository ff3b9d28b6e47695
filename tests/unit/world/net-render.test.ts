/** Pure parts of the world network: allowlist parsing, dnsmasq files, nft scripts, IPv4 math, DNS wire. */
import { describe, expect, test } from "bun:test";
import { parseAllowedDomains, renderServersFile, NetConfigError } from "../../../agent/world/net/domains.ts";
import { renderSetUpdate, renderTable, ipElements } from "../../../agent/world/net/ruleset.ts";
import { renderDnsmasqConf } from "../../../agent/world/net/dnsmasq-conf.ts";
import { cidrRange, mergeRanges, rangeToNft, ipToInt, intToIp } from "../../../agent/world/net/ipv4.ts";
import { addressesFor, decodeMessage, encodeMessage, QTYPE, RCODE } from "../../../agent/world/net/dnswire.ts";
import { hostVethName, resolveUpstream } from "../../../agent/world/net/index.ts";
import { isIpv4Cidr } from "../../../src/sys/nft.ts";

describe("allowlist entries", () => {
  test("exact and wildcard, normalised and de-duplicated", () => {
    expect(parseAllowedDomains(["PyPI.org.", "*.github.com", "pypi.org"])).toEqual([
      { name: "pypi.org", wildcard: false },
      { name: "github.com", wildcard: true },
    ]);
  });
  test("rejects what is not a host name (and cannot inject dnsmasq config)", () => {
    for (const bad of ["", "a b.com", "x/1.2.3.4", "foo.com\nserver=8.8.8.8", "*.", "-a.com", "*.*.com"]) {
      expect(() => parseAllowedDomains([bad])).toThrow(NetConfigError);
    }
  });
  test("servers file: exact names shut their subdomains; wildcards forward subdomains only; a marker ends it", () => {
    const f = renderServersFile(parseAllowedDomains(["pypi.org", "*.github.com", "npmjs.org", "*.npmjs.org"]), { host: "10.0.0.2", port: 53 }, 7);
    const lines = f.trim().split("\n").slice(1);
    expect(lines).toEqual([
      "server=/pypi.org/10.0.0.2",
      "server=/*.pypi.org/",
      "server=/npmjs.org/10.0.0.2",
      "server=/*.github.com/10.0.0.2",
      "server=/*.npmjs.org/10.0.0.2",
      "server=/substrate-generation-7.invalid/",
    ]);
    expect(renderServersFile([], { host: "10.0.0.2", port: 5353 }, 0)).toContain("server=/substrate-generation-0.invalid/");
  });
  test("dnsmasq conf: loopback stub, NXDOMAIN by default, AAAA filtered, nftset", () => {
    const c = renderDnsmasqConf({ serversFile: "/x/s", user: "dnsmasq", filterAaaa: true, nftset: true });
    for (const l of ["listen-address=127.0.0.53", "bind-interfaces", "no-resolv", "address=/#/", "filter-AAAA", "servers-file=/x/s", "nftset=/#/4#inet#substrate#dns_ips"]) {
      expect(c.split("\n")).toContain(l);
    }
    expect(renderDnsmasqConf({ serversFile: "/x/s", user: "nobody", filterAaaa: false, nftset: false })).not.toContain("filter-AAAA");
  });
});

describe("nft scripts", () => {
  test("the table: policy drop, lo, IPv6 refused, DNS only from dnsmasq to upstream, set-based allow", () => {
    const t = renderTable({ upstream: { host: "10.0.0.2", port: 53 }, dnsmasqUid: 999, ports: [443, 80], ips: ["10.9.0.0/16"] });
    expect(t).toContain("table inet substrate {");
    expect(t).toContain("set allowed_ips { type ipv4_addr; flags interval; }");
    expect(t).toContain("policy drop;");
    expect(t).toContain("meta skuid 999 ip daddr 10.0.0.2 udp dport 53 accept");
    expect(t).toContain("ip daddr @allowed_ips tcp dport @allowed_ports accept");
    // IPv6 is refused before anything else could accept it (only loopback comes first).
    const lines = t.split("\n").map((l) => l.trim());
    expect(lines.findIndex((l) => l.startsWith("meta nfproto ipv6"))).toBe(lines.indexOf('oif "lo" accept') + 1);
    expect(t).toContain("add element inet substrate allowed_ips { 10.9.0.0-10.9.255.255 }");
    expect(t).toContain("add element inet substrate allowed_ports { 443, 80 }");
  });
  test("an update is flush + add of each set in one script; empty sets only flush", () => {
    expect(renderSetUpdate({ ips: ["10.0.0.1", "10.0.0.2", "10.0.0.1"], ports: [80], flushDnsIps: true })).toEqual([
      "flush set inet substrate allowed_ips",
      "add element inet substrate allowed_ips { 10.0.0.1-10.0.0.2 }",
      "flush set inet substrate allowed_ports",
      "add element inet substrate allowed_ports { 80 }",
      "flush set inet substrate dns_ips",
    ]);
    expect(renderSetUpdate({ ips: [] })).toEqual(["flush set inet substrate allowed_ips"]);
  });
  test("overlapping and adjacent addresses are merged (nft refuses overlapping intervals)", () => {
    expect(ipElements(["10.0.0.5/24", "10.0.0.9", "10.0.1.0/24", "192.168.1.1"])).toEqual(["10.0.0.0-10.0.1.255", "192.168.1.1"]);
  });
});

describe("IPv4 math", () => {
  test("cidr ranges ignore host bits; ints round-trip", () => {
    expect(cidrRange("10.201.0.7/30")).toEqual({ start: ipToInt("10.201.0.4"), end: ipToInt("10.201.0.7") });
    expect(intToIp(ipToInt("255.1.0.254"))).toBe("255.1.0.254");
    expect(mergeRanges([{ start: 5, end: 9 }, { start: 1, end: 2 }, { start: 3, end: 4 }]).map(rangeToNft)).toEqual(["0.0.0.1-0.0.0.9"]);
    expect(isIpv4Cidr("1.2.3.4/33")).toBe(false);
    expect(isIpv4Cidr("1.2.3.256")).toBe(false);
    expect(isIpv4Cidr("0.0.0.0/0")).toBe(true);
  });
});

describe("DNS wire", () => {
  test("a response with a CNAME chain round-trips and yields the chain's addresses", () => {
    const m = {
      id: 77,
      response: true,
      rcode: RCODE.NOERROR,
      questions: [{ name: "www.example.test", type: QTYPE.A }],
      answers: [
        { name: "www.example.test", type: QTYPE.CNAME, ttl: 300, data: "cdn.example.net" },
        { name: "cdn.example.net", type: QTYPE.A, ttl: 20, data: "10.1.2.3" },
        { name: "other.test", type: QTYPE.A, ttl: 20, data: "10.9.9.9" },
        { name: "cdn.example.net", type: QTYPE.AAAA, ttl: 20, data: "fd00:0:0:0:0:0:0:1" },
      ],
    };
    const d = decodeMessage(encodeMessage(m));
    expect(d).toEqual(m);
    expect(addressesFor("WWW.example.test.", d).map((r) => r.data)).toEqual(["10.1.2.3"]);
  });
  test("garbage is an error, not a crash", () => {
    expect(() => decodeMessage(Buffer.from([1, 2, 3]))).toThrow();
  });
});

describe("names and upstream", () => {
  test("host veth: sbx + 8 hex, ≤ 15 chars, differs for worlds created the same millisecond", () => {
    const a = hostVethName("wld_0193a6f0-0000-7000-8000-000000000001");
    const b = hostVethName("wld_0193a6f0-0000-7000-8000-000000000002");
    expect(a).toMatch(/^sbx[0-9a-f]{8}$/);
    expect(a).not.toBe(b);
  });
  test("upstream: ip or ip:port; bad values are config errors", () => {
    expect(resolveUpstream("10.0.0.2")).toEqual({ host: "10.0.0.2", port: 53 });
    expect(resolveUpstream("10.0.0.2:5353")).toEqual({ host: "10.0.0.2", port: 5353 });
    expect(() => resolveUpstream("dns.google")).toThrow(NetConfigError);
    expect(() => resolveUpstream("::1")).toThrow(NetConfigError);
  });
});
