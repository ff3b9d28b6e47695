/**
 * `nft` (nftables) wrapper. Changes are applied with `nft -f -`: the whole script is one
 * netlink batch, so the kernel applies all of it or none (no half-updated set a packet
 * could see). Reads use `nft -j` where the shape matters.
 *
 * Trap: `nft -f` parses the whole script before applying; any value spliced into a script
 * must be validated first (see `isIpv4`, `isIpv4Cidr`) or it could inject statements.
 */
import { NetCommandError, netExec } from "./_netexec.ts";

export class NftError extends NetCommandError {
  override name = "NftError";
}

export interface NftOptions {
  /** Run inside the network namespace of this host PID. */
  netnsPid?: number;
  /** Join the PID's user namespace too (rootless agent; see _netexec.ts). */
  userns?: boolean;
  timeoutMs?: number;
}

/** Applies an nft script atomically (`nft -f -`). */
export async function nftApply(script: string, o: NftOptions = {}): Promise<void> {
  const r = await netExec(["nft", "-f", "-"], { netnsPid: o.netnsPid, userns: o.userns, timeoutMs: o.timeoutMs, stdin: script });
  if (r.code !== 0) throw new NftError(r.argv, r.code, r.stderr, "nft -f -");
}

/** `nft ARGS` (e.g. `list ruleset`); returns stdout. */
export async function nft(args: string[], o: NftOptions = {}): Promise<string> {
  const r = await netExec(["nft", ...args], { netnsPid: o.netnsPid, userns: o.userns, timeoutMs: o.timeoutMs });
  if (r.code !== 0) throw new NftError(r.argv, r.code, r.stderr, `nft ${args.join(" ")}`);
  return r.stdout;
}

/** The text of `nft list ruleset` (stable output; the tests compare it byte for byte). */
export const nftListRuleset = (o: NftOptions = {}): Promise<string> => nft(["list", "ruleset"], o);

/** One element of a set as nft -j reports it: an address, a prefix, a range, or one with expiry. */
type NftJsonElem =
  | string
  | number
  | { prefix: { addr: string; len: number } }
  | { range: [string, string] }
  | { elem: { val: NftJsonElem; timeout?: number; expires?: number } };

function elemToString(e: NftJsonElem): string {
  if (typeof e === "string" || typeof e === "number") return String(e);
  if ("prefix" in e) return `${e.prefix.addr}/${e.prefix.len}`;
  if ("range" in e) return `${e.range[0]}-${e.range[1]}`;
  return elemToString(e.elem.val);
}

/** Elements of a set, as strings ("10.0.0.1", "10.1.0.0/16", "a-b"); [] when the set is empty. */
export async function nftSetElements(family: string, table: string, set: string, o: NftOptions = {}): Promise<string[]> {
  const out = await nft(["-j", "list", "set", family, table, set], o);
  const doc = JSON.parse(out) as { nftables: Array<{ set?: { elem?: NftJsonElem[] } }> };
  const s = doc.nftables.find((x) => x.set !== undefined)?.set;
  return (s?.elem ?? []).map(elemToString);
}

/** True when the table exists in that namespace. */
export async function nftTableExists(family: string, table: string, o: NftOptions = {}): Promise<boolean> {
  const r = await netExec(["nft", "list", "table", family, table], { netnsPid: o.netnsPid, userns: o.userns, timeoutMs: o.timeoutMs });
  return r.code === 0;
}

/** Deletes a table if present (`delete table` fails on a missing one; `destroy` needs nft ≥ 1.0.8). */
export async function nftDeleteTable(family: string, table: string, o: NftOptions = {}): Promise<boolean> {
  if (!(await nftTableExists(family, table, o))) return false;
  await nftApply(`delete table ${family} ${table}\n`, o);
  return true;
}

const OCTET = "(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
const IPV4 = new RegExp(`^${OCTET}(\\.${OCTET}){3}$`);
export const isIpv4 = (s: string): boolean => IPV4.test(s);
/** "a.b.c.d" or "a.b.c.d/n" (0 ≤ n ≤ 32). */
export function isIpv4Cidr(s: string): boolean {
  const [addr, len, ...rest] = s.split("/");
  if (rest.length > 0 || addr === undefined || !isIpv4(addr)) return false;
  return len === undefined || (/^\d{1,2}$/.test(len) && Number(len) <= 32);
}
