/**
 * The allowlist resolver task: asks the upstream resolver for the A records of every exact
 * allowed name and hands the union to a callback that replaces the nft set atomically.
 * Refreshes after min(TTL) clamped to [MIN_REFRESH_SECS, refreshSecs].
 *
 * It queries upstream itself (a few lines of DNS over `node:dgram`) rather than going through
 * the world's dnsmasq: it runs in the agent's network namespace, and the answer must not be
 * influenced by anything inside the world. Wildcard entries ("*.x") cannot be enumerated;
 * their addresses reach the world's nft set through dnsmasq's `nftset=` as the world resolves.
 *
 * Failure policy: a timeout or SERVFAIL keeps the previous addresses of that name (the name
 * did not change, our path to upstream did); NXDOMAIN or an empty answer drops them.
 */
import dgram from "node:dgram";
import { addressesFor, decodeMessage, encodeMessage, QTYPE, RCODE } from "./dnswire.ts";
import type { DomainRule, Upstream } from "./domains.ts";

export const MIN_REFRESH_SECS = 5;

export interface ResolveOutcome {
  name: string;
  ips: string[];
  ttl: number;
  error?: string;
}

/** One A query over UDP; retries once; rejects on timeout or a malformed answer. */
export async function queryA(
  name: string,
  upstream: Upstream,
  timeoutMs = 1500,
): Promise<{ rcode: number; ips: string[]; ttl: number }> {
  let lastErr: unknown;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      return await queryOnce(name, upstream, timeoutMs);
    } catch (e) {
      lastErr = e;
    }
  }
  throw lastErr;
}

function queryOnce(name: string, upstream: Upstream, timeoutMs: number): Promise<{ rcode: number; ips: string[]; ttl: number }> {
  return new Promise((resolve, reject) => {
    const id = Math.floor(Math.random() * 0xffff);
    const sock = dgram.createSocket("udp4");
    const timer = setTimeout(() => {
      sock.close();
      reject(new Error(`no answer from ${upstream.host}:${upstream.port} for ${name} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on("error", (e) => {
      clearTimeout(timer);
      sock.close();
      reject(e);
    });
    sock.on("message", (buf, rinfo) => {
      if (rinfo.address !== upstream.host) return;
      let m;
      try {
        m = decodeMessage(buf);
      } catch {
        return;
      }
      if (m.id !== id || !m.response) return;
      clearTimeout(timer);
      sock.close();
      const recs = addressesFor(name, m, QTYPE.A);
      const ttl = recs.length === 0 ? 0 : Math.min(...recs.map((r) => r.ttl));
      resolve({ rcode: m.rcode, ips: [...new Set(recs.map((r) => r.data))], ttl });
    });
    sock.send(encodeMessage({ id, response: false, rcode: 0, questions: [{ name, type: QTYPE.A }], answers: [] }), upstream.port, upstream.host);
  });
}

export class AllowlistResolver {
  private last = new Map<string, string[]>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  lastRefresh: Date | null = null;

  constructor(
    private rules: DomainRule[],
    private readonly upstream: Upstream,
    private readonly refreshSecs: number,
    /** Called with the union of addresses after each pass; must apply them atomically. */
    private readonly apply: (ips: string[]) => Promise<void>,
    private readonly warn: (msg: string) => void,
  ) {}

  setRules(rules: DomainRule[]): void {
    this.rules = rules;
    const keep = new Set(rules.filter((r) => !r.wildcard).map((r) => r.name));
    for (const k of [...this.last.keys()]) if (!keep.has(k)) this.last.delete(k);
  }

  /** The addresses from the last pass, per name. */
  snapshot(): Map<string, string[]> {
    return new Map(this.last);
  }

  /** Resolves every exact name now; returns the delay (s) until the next pass should run. */
  async resolveAll(): Promise<{ ips: string[]; nextSecs: number; outcomes: ResolveOutcome[] }> {
    const names = this.rules.filter((r) => !r.wildcard).map((r) => r.name);
    const outcomes = await Promise.all(
      names.map(async (name): Promise<ResolveOutcome> => {
        try {
          const r = await queryA(name, this.upstream);
          if (r.rcode === RCODE.SERVFAIL || r.rcode === RCODE.REFUSED) {
            return { name, ips: this.last.get(name) ?? [], ttl: 0, error: `upstream answered rcode ${r.rcode}` };
          }
          return { name, ips: r.ips, ttl: r.ttl };
        } catch (e) {
          return { name, ips: this.last.get(name) ?? [], ttl: 0, error: (e as Error).message };
        }
      }),
    );
    for (const o of outcomes) {
      this.last.set(o.name, o.ips);
      if (o.error) this.warn(`allowlist: cannot resolve ${o.name} (${o.error}); keeping ${o.ips.length} previous address(es)`);
    }
    const ttls = outcomes.filter((o) => !o.error && o.ips.length > 0).map((o) => o.ttl);
    const minTtl = ttls.length === 0 ? this.refreshSecs : Math.min(...ttls);
    const nextSecs = Math.max(MIN_REFRESH_SECS, Math.min(this.refreshSecs, minTtl));
    const ips = [...new Set(outcomes.flatMap((o) => o.ips))];
    return { ips, nextSecs, outcomes };
  }

  /** One pass plus apply; used by refresh() and the timer. */
  async refresh(extraIps: string[]): Promise<number> {
    const r = await this.resolveAll();
    await this.apply([...r.ips, ...extraIps]);
    this.lastRefresh = new Date();
    return r.nextSecs;
  }

  /** Schedules passes; `run` must do the pass (serialised by the caller) and return the next delay. */
  schedule(delaySecs: number, run: () => Promise<number>): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      run()
        .then((next) => this.schedule(next, run))
        .catch((e: unknown) => {
          this.warn(`allowlist refresh failed: ${(e as Error).message}`);
          this.schedule(this.refreshSecs, run);
        });
    }, delaySecs * 1000);
    // The agent must be able to exit with worlds still configured.
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
