/** Pure parts of the world network: the world's nft backstop and ip batch, IPv4 math, DNS wire. */
import { describe, expect, test } from "bun:test";
import { cidrRange, mergeRanges, rangeToNft, ipToInt, intToIp } from "../../../agent/world/net/ipv4.ts";
import { addressesFor, decodeMessage, encodeMessage, QTYPE, RCODE } from "../../../agent/world/net/dnswire.ts";
import { renderWorldTable, worldIpBatch } from "../../../agent/egress/netns.ts";
import { blockedEgressLine } from "../../../src/contract/net.ts";
import { proxyEnv } from "../../../agent/egress/world.ts";
import { isIpv4Cidr } from "../../../src/sys/nft.ts";

describe("the world's egress netns", () => {
  test("nft backstop: TCP redirected to the helper, the stub mapped, policy drop, IPv6 and UDP refused", () => {
    const t = renderWorldTable();
    expect(t).toContain("ip daddr != 127.0.0.0/8 meta l4proto tcp redirect to :15001");
    expect(t).toContain("ip daddr 127.0.0.53 udp dport 53 dnat ip to 127.0.0.53:5353");
    expect(t).toContain("policy drop");
    expect(t).toContain("no IPv6 egress");
    expect(t).not.toContain('oif "lo" accept'); // everything leaves via lo in a lo-only world: no such shortcut
    expect(worldIpBatch()).toEqual(["link set lo up", "addr add 198.18.0.1/32 dev lo", "route add local 0.0.0.0/0 dev lo table local"]);
  });
  test("proxy env: upper and lower case, Node, gRPC, Java appended to the caller's options", () => {
    const e = proxyEnv({ JAVA_TOOL_OPTIONS: "-Xmx1g" });
    for (const k of ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "GRPC_PROXY", "http_proxy", "https_proxy", "all_proxy", "grpc_proxy"]) expect(e[k]).toBe("http://127.0.0.1:3128");
    expect(e.NO_PROXY).toBe("localhost,127.0.0.1,::1");
    expect(e.NODE_USE_ENV_PROXY).toBe("1");
    expect(e.JAVA_TOOL_OPTIONS).toStartWith("-Xmx1g -Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort=3128");
  });
  test("the CLI's end-of-command line", () => {
    expect(blockedEgressLine([])).toBeNull();
    const b = (name: string, port: number, reason = "not_allowed" as const) => ({ name, port, reason, policy_id: "default", message: "" });
    expect(blockedEgressLine([b("example.org", 0), b("example.org", 443)])).toBe("blocked egress: example.org:443 (not in net.allowed of policy default)");
    expect(blockedEgressLine([b("a.test", 0)])).toBe("blocked egress: a.test (not in net.allowed of policy default)");
    expect(blockedEgressLine([b("a", 1), b("b", 2), b("c", 3), b("d", 4)])).toEndWith(", and 1 more");
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

