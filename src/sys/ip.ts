/**
 * `ip` (iproute2) wrapper: links, addresses, routes, optionally inside a world's network
 * namespace (by host PID). Reads use `ip -j` (JSON) so results are typed, not scraped.
 * Several changes go through one `ip -batch -` process: it stops at the first failing
 * line (we do not pass -force), so a caller can undo what it created.
 */
import { NetCommandError, netExec, type NetExecOptions } from "./_netexec.ts";

export class IpError extends NetCommandError {
  override name = "IpError";
}

export interface IpOptions {
  /** Run inside the network namespace of this host PID. */
  netnsPid?: number;
  /** Join the PID's user namespace too (rootless agent; see _netexec.ts). */
  userns?: boolean;
  timeoutMs?: number;
}

export interface IpLink {
  ifindex: number;
  ifname: string;
  flags: string[];
  mtu: number;
  operstate?: string;
  /** veth: the peer's name when it is in the same namespace. */
  link?: string;
  /** veth: set when the peer lives in another namespace. */
  link_netnsid?: number;
  link_type?: string;
}

export interface IpAddrInfo {
  family: "inet" | "inet6";
  local: string;
  prefixlen: number;
  scope?: string;
}
export interface IpAddrs {
  ifindex: number;
  ifname: string;
  addr_info: IpAddrInfo[];
}

export interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  prefsrc?: string;
}

const exec = (o: IpOptions, extra: Partial<NetExecOptions> = {}): NetExecOptions => ({
  netnsPid: o.netnsPid,
  userns: o.userns,
  timeoutMs: o.timeoutMs,
  ...extra,
});

/** `ip ARGS`; throws IpError on a non-zero exit. Returns stdout. */
export async function ip(args: string[], o: IpOptions = {}): Promise<string> {
  const r = await netExec(["ip", ...args], exec(o));
  if (r.code !== 0) throw new IpError(r.argv, r.code, r.stderr, `ip ${args.join(" ")}`);
  return r.stdout;
}

/** `ip -j ARGS` parsed. */
export async function ipJson<T>(args: string[], o: IpOptions = {}): Promise<T> {
  const out = await ip(["-j", ...args], o);
  return (out.trim() === "" ? [] : JSON.parse(out)) as T;
}

/**
 * Several `ip` commands (one per line, without the leading `ip`) in one process.
 * Stops at the first failure; the error's stderr names the failing line ("Command failed -:N").
 */
export async function ipBatch(lines: string[], o: IpOptions = {}): Promise<void> {
  const r = await netExec(["ip", "-batch", "-"], exec(o, { stdin: `${lines.join("\n")}\n` }));
  if (r.code !== 0) throw new IpError(r.argv, r.code, r.stderr, `ip -batch (${lines.length} commands)`);
}

export const linkList = (o: IpOptions = {}): Promise<IpLink[]> => ipJson<IpLink[]>(["link", "show"], o);

export async function linkExists(name: string, o: IpOptions = {}): Promise<boolean> {
  return (await linkList(o)).some((l) => l.ifname === name);
}

/** Deletes a link; a veth takes its peer with it. Missing links are not an error. */
export async function linkDelete(name: string, o: IpOptions = {}): Promise<boolean> {
  const r = await netExec(["ip", "link", "del", "dev", name], exec(o));
  if (r.code === 0) return true;
  if (/Cannot find device|does not exist/.test(r.stderr)) return false;
  throw new IpError(r.argv, r.code, r.stderr, `ip link del ${name}`);
}

export const addrList = (o: IpOptions = {}): Promise<IpAddrs[]> => ipJson<IpAddrs[]>(["addr", "show"], o);

export const routeList = (o: IpOptions = {}, family: "-4" | "-6" = "-4"): Promise<IpRoute[]> =>
  ipJson<IpRoute[]>([family, "route", "show"], o);

/** Linux interface names: at most 15 bytes (IFNAMSIZ - 1), no '/', no whitespace. */
export function isValidIfName(name: string): boolean {
  return /^[A-Za-z0-9_.-]{1,15}$/.test(name);
}
