/**
 * PolicyBroker: the long-lived holder of compiled policies (interactive shell, host proxy,
 * agent API). A file watcher on ~/.substrate/policies/ reloads the policies in use; each new
 * CompiledPolicy is built completely and validated (schema, patterns, self-tests) before a
 * single reference assignment swaps it in, so an evaluation never sees a torn policy. A broken
 * edit keeps the last good policy in force and prints one warning (once per distinct error).
 *
 * `substrate policy reload` (another process) touches `policies/.reload`; the watcher sees the
 * change like any edit.
 */
import { mkdirSync, watch, type FSWatcher } from "node:fs";
import { loadEffectivePolicySync, policiesDir, PolicyError, resolveSelection, type LoadedPolicy, type LoadOptions } from "./load.ts";

export const RELOAD_STAMP = ".reload";

export interface BrokerOptions extends LoadOptions {
  /** one line per broken reload; default: stderr */
  warn?: (msg: string) => void;
  /** coalesce bursts of file events (editors write several times); default 50 ms */
  debounceMs?: number;
  /** called after each reload pass (tests wait on it) */
  onReload?: (r: ReloadResult) => void;
}

export interface ReloadResult {
  reloaded: string[];
  failed: PolicyError[];
}

export class PolicyBroker {
  /** by cwd: the loaded policy currently in force (swapped whole on reload) */
  private readonly byCwd = new Map<string, LoadedPolicy>();
  private watcher: FSWatcher | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly warned = new Set<string>();
  readonly dir: string;

  constructor(private readonly opts: BrokerOptions = {}) {
    this.dir = policiesDir(opts);
  }

  private loadOpts(): LoadOptions {
    return this.opts.home !== undefined ? { home: this.opts.home } : {};
  }

  /**
   * The policy in force for cwd. First use loads it (a PolicyError propagates: there is no
   * last good policy yet); later calls return the cached object that reloads replace.
   * The selection (host-side record, `.substrate-profile`) is re-resolved on every call, so a
   * `substrate policy use` or a stricter profile applies at once.
   */
  current(cwd: string): LoadedPolicy {
    const hit = this.byCwd.get(cwd);
    if (hit) {
      // a different profile now selects another policy: resolve again
      const fresh = this.selectionChanged(cwd, hit);
      if (!fresh) return hit;
    }
    const l = loadEffectivePolicySync(cwd, this.loadOpts());
    this.byCwd.set(cwd, l);
    return l;
  }

  /** The record or a `.substrate-profile` now selects a different policy (a few stats and tiny reads). */
  private selectionChanged(cwd: string, hit: LoadedPolicy): boolean {
    let now: ReturnType<typeof resolveSelection>;
    try {
      now = resolveSelection(cwd, { ...this.loadOpts(), record: false });
    } catch {
      return true; // let the full load report the problem
    }
    if (now.candidate) {
      const ign = hit.source.selection.ignored_profile;
      return !(ign && ign.id === now.candidate.id && ign.file === now.candidate.file && now.policy === hit.policy.id);
    }
    return now.policy !== hit.policy.id;
  }

  /** Start watching the policy directory (created if missing). */
  watch(): this {
    if (this.watcher) return this;
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.watcher = watch(this.dir, { persistent: false }, () => this.schedule());
    return this;
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      const r = this.reload();
      this.opts.onReload?.(r);
    }, this.opts.debounceMs ?? 50);
  }

  /** Re-load every policy in use; keep the old one where the new one is invalid. */
  reload(): ReloadResult {
    const r: ReloadResult = { reloaded: [], failed: [] };
    for (const [cwd, old] of this.byCwd) {
      try {
        const l = loadEffectivePolicySync(cwd, this.loadOpts());
        this.byCwd.set(cwd, l); // the atomic swap: one reference assignment
        if (l.commit !== old.commit || l.source.file !== old.source.file) r.reloaded.push(l.source.file);
      } catch (e) {
        if (!(e instanceof PolicyError)) throw e;
        r.failed.push(e);
        const text = e.format();
        if (!this.warned.has(text)) {
          this.warned.add(text);
          (this.opts.warn ?? ((m: string) => process.stderr.write(`${m}\n`)))(`${text}\nsubstrate: keeping the last good policy "${old.policy.id}" in force`);
        }
      }
    }
    return r;
  }

  close(): void {
    this.watcher?.close();
    this.watcher = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
