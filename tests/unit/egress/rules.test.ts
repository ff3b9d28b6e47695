/** net.allowed semantics (agent/egress/rules.ts) and the address guard (agent/egress/addr.ts). */
import { expect, test } from "bun:test";
import { addressAllowedByRule, canonicalName, decide, EgressRuleError, nameAllowed, parseRules } from "../../../agent/egress/rules.ts";
import { classify, unmapV4 } from "../../../agent/egress/addr.ts";

const r = parseRules(["example.com", "*.pkg.dev", "ssh.example.com:22", "db.local:5432,6000-6010", "!bad.pkg.dev", "any.example:*", "10.9.0.0/16", "!10.9.9.9"]);
const d = (name: string | null, port: number, ip: string | null = null) => decide(r, { name, ip, port }).allow;

test("exact names, *. subdomains (not the apex), default ports 443/80", () => {
  expect(d("example.com", 443)).toBe(true);
  expect(d("example.com", 80)).toBe(true);
  expect(d("example.com", 22)).toBe(false);
  expect(d("www.example.com", 443)).toBe(false);
  expect(d("a.b.pkg.dev", 443)).toBe(true);
  expect(d("pkg.dev", 443)).toBe(false);
  expect(d("ssh.example.com", 22)).toBe(true);
  expect(d("db.local", 6005)).toBe(true);
  expect(d("db.local", 6011)).toBe(false);
  expect(d("any.example", 1)).toBe(true);
});

test("deny wins; a name denied on every port is not answered by DNS", () => {
  expect(d("bad.pkg.dev", 443)).toBe(false);
  expect(decide(r, { name: "bad.pkg.dev", ip: null, port: 443 })).toMatchObject({ allow: false, reason: "denied_by_rule" });
  expect(nameAllowed(r, "x.pkg.dev")).toBe(true);
  expect(nameAllowed(r, "nope.test")).toBe(false);
  expect(nameAllowed(parseRules(["*.x.test", "!a.x.test:*"]), "a.x.test")).toBe(false);
});

test("address rules: literals and private ranges; deny entries too", () => {
  expect(d(null, 443, "10.9.1.1")).toBe(true);
  expect(d(null, 443, "10.9.9.9")).toBe(false);
  expect(d(null, 443, "10.8.1.1")).toBe(false);
  expect(addressAllowedByRule(r, "10.9.1.1")).toBe(true);
  expect(addressAllowedByRule(r, "192.168.1.1")).toBe(false);
});

test("names are canonical; junk never matches; bad entries are clear errors", () => {
  expect(canonicalName("Example.COM.")).toBe("example.com");
  expect(canonicalName("a b")).toBeNull();
  expect(canonicalName("x\u0000.example.com")).toBeNull();
  expect(() => parseRules(["exa*mple.com"])).toThrow(EgressRuleError);
  expect(() => parseRules(["example.com:0"])).toThrow(/not a port/);
  expect(() => parseRules(["example.com:99999"])).toThrow(EgressRuleError);
});

test("address classes: loopback, metadata, link-local, multicast, synthetic denied; private apart", () => {
  const own = new Set(["203.0.113.9"]);
  for (const a of ["127.0.0.1", "127.9.9.9", "0.0.0.0", "169.254.169.254", "224.0.0.1", "255.255.255.255", "198.18.0.7", "100.100.100.200", "::1", "::", "fe80::1", "ff02::1", "fd00:ec2::254", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "203.0.113.9"]) {
    expect(classify(a, own).cls).toBe("denied");
  }
  for (const a of ["10.0.0.1", "172.16.5.5", "192.168.1.1", "100.64.0.1", "fd12::1"]) expect(classify(a, own).cls).toBe("private");
  for (const a of ["93.184.215.14", "2606:4700::1111", "1.1.1.1"]) expect(classify(a, own).cls).toBe("public");
  expect(unmapV4("::ffff:10.1.2.3")).toBe("10.1.2.3");
});

test("a malformed net.allowed entry is a world spec error naming it (a 400, never a gateway crash)", async () => {
  const { WorldSpec } = await import("../../../src/contract/world.ts");
  const bad = WorldSpec.safeParse({ project_dir: "/p", allowed_domains: ["ok.test", "exa mple.com:443"] });
  expect(bad.success).toBe(false);
  expect(bad.error!.issues[0]!.message).toContain('net.allowed entry "exa mple.com:443" is not a host');
  expect(WorldSpec.safeParse({ project_dir: "/p", allowed_domains: ["*.ok.test:22,8000-8100", "!10.0.0.0/8", "*:*"] }).success).toBe(true);
});
