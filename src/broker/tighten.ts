/**
 * Is policy P at least as strict as policy R? (issue 14 item 4: a project file may only
 * tighten the policy recorded for its project.) Decided field by field, conservatively: a
 * stricter policy written differently (`curl -x *` instead of `curl *`) is not recognised, and
 * a field this module has no rule for must be equal. Sound: when it says yes, everything P lets
 * a command do, R lets it do too.
 */
import type { Policy } from "../contract/policy.ts";

const IGNORED = new Set(["id", "name", "examples", "privacy", "world.reuse_session", "world.enable_preload", "net.dns.refresh_secs"]);

type Rule = (p: unknown, r: unknown) => boolean;

const list = (x: unknown): string[] => (Array.isArray(x) ? (x as string[]) : []);
const superset: Rule = (p, r) => list(r).every((x) => list(p).includes(x));
/** equal, or a non-empty subset (an empty list may mean "nothing" or "the default": never read as tighter) */
const narrower: Rule = (p, r) => JSON.stringify(p) === JSON.stringify(r) || (list(p).length > 0 && list(p).every((x) => list(r).includes(x)));
/** an allowlist: none in R (everything allowed) → any; else a non-empty subset */
const allowlist: Rule = (p, r) => list(r).length === 0 || (list(p).length > 0 && list(p).every((x) => list(r).includes(x)));
const falseTighter: Rule = (p, r) => p === false || r === true;
const trueTighter: Rule = (p, r) => p === true || r === false;
/** a bound: unset in both, or set in P no higher than in R */
const bound =
  (parse: (v: unknown) => number | null): Rule =>
  (p, r) => {
    if (p === undefined && r === undefined) return true;
    if (r === undefined) return false; // unset = the default or unbounded: a set bound is not known to be tighter
    const a = parse(p);
    const b = parse(r);
    return a !== null && b !== null && a <= b;
  };
const num = (v: unknown): number | null => (typeof v === "number" ? v : typeof v === "string" && /^[0-9.]+$/.test(v) ? Number(v) : null);
const size = (v: unknown): number | null => {
  const m = typeof v === "string" ? /^([0-9]+)(Ki|Mi|Gi)$/.exec(v) : null;
  return m ? Number(m[1]) * { Ki: 1, Mi: 1024, Gi: 1024 * 1024 }[m[2] as "Ki" | "Mi" | "Gi"] : null;
};

const RULES: Record<string, Rule> = {
  mode: (p, r) => p === "enforce" || r === "observe",
  "fs.read": narrower,
  "fs.write": narrower,
  "fs.deny_read": superset,
  "fs.read_only": superset,
  "net.allowed": narrower,
  "net.dns.pinned": trueTighter,
  "net.egress_budget.bytes_per_sec": bound(num),
  "net.egress_budget.total_bytes": bound(num),
  "commands.allowed": allowlist,
  "commands.denied": superset,
  "commands.isolated": superset,
  "commands.require_approval": superset,
  "commands.allow_shell_operators": falseTighter,
  "world.isolate_network": trueTighter,
  "world.allow_ptrace": falseTighter,
  "world.root_inside": falseTighter,
  "world.limits.cpu": bound(num),
  "world.limits.memory": bound(size),
  "world.limits.pids": bound(num),
  "approval.interactive": falseTighter,
  "approval.auto_approve": (p, r) => list(p).every((x) => list(r).includes(x)),
  "approval.require_approval": trueTighter,
};

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);

/** null when P is at least as strict as R; else the first field where it is not (for the notice). */
export function looserField(p: Policy, r: Policy): string | null {
  const walk = (a: unknown, b: unknown, path: string): string | null => {
    if (IGNORED.has(path)) return null;
    const rule = RULES[path];
    if (rule) return rule(a, b) ? null : path;
    if (isObj(a) || isObj(b)) {
      const ao = isObj(a) ? a : {};
      const bo = isObj(b) ? b : {};
      for (const k of new Set([...Object.keys(ao), ...Object.keys(bo)])) {
        const bad = walk(ao[k], bo[k], path ? `${path}.${k}` : k);
        if (bad) return bad;
      }
      return null;
    }
    return JSON.stringify(a) === JSON.stringify(b) ? null : path;
  };
  return walk(p, r, "");
}
