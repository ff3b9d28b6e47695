/**
 * The interactive approval prompt (spec `request_approval`): command, policy, reason, diff
 * preview, then allow once / for this session / always / deny. Reads one line from the
 * terminal (canonical mode: the user types a digit and Enter). Enter alone, EOF, or three
 * unreadable answers mean "deny": a prompt must fail closed.
 */
import type { ApprovalChoice, FsDiff } from "../contract/index.ts";

export interface PromptInput {
  stdin: NodeJS.ReadableStream;
  stderr: { write(s: string): unknown };
  command: string;
  policyId: string;
  policyFile: string;
  reason: string;
  pattern: string | null;
  preview?: string;
}

const CHOICES: Record<string, ApprovalChoice> = {
  "1": "once",
  o: "once",
  once: "once",
  "2": "session",
  s: "session",
  session: "session",
  "3": "always",
  a: "always",
  always: "always",
  "4": "deny",
  d: "deny",
  deny: "deny",
  n: "deny",
  no: "deny",
};

export async function promptApproval(p: PromptInput): Promise<ApprovalChoice> {
  const w = (s: string): unknown => p.stderr.write(s);
  w("\nCommand Approval Request\n");
  w(`  Command: ${p.command}\n`);
  w(`  Policy:  ${p.policyId} (${p.policyFile})\n`);
  w(`  Reason:  ${p.reason}${p.pattern !== null ? ` (pattern: ${p.pattern})` : ""}\n`);
  if (p.preview !== undefined) w(`  Impact:  ${p.preview}\n`);
  w("  [1] Allow once   [2] Allow for this session   [3] Allow always   [4] Deny\n");
  for (let attempt = 0; attempt < 3; attempt++) {
    w("Choice [1-4, Enter = deny]: ");
    const line = await readLine(p.stdin);
    if (line === null) {
      w("\n");
      return "deny";
    }
    const a = line.trim().toLowerCase();
    if (a === "") return "deny";
    const c = CHOICES[a];
    if (c) return c;
    w(`  "${line.trim()}" is not a choice\n`);
  }
  return "deny";
}

/** One line from a stream, leaving the rest unread as far as possible; null on EOF. */
export function readLine(stdin: NodeJS.ReadableStream): Promise<string | null> {
  return new Promise((resolve) => {
    let buf = "";
    const done = (v: string | null): void => {
      stdin.removeListener("data", onData);
      stdin.removeListener("end", onEnd);
      stdin.removeListener("error", onEnd);
      stdin.pause();
      resolve(v);
    };
    const onData = (chunk: Buffer | string): void => {
      buf += typeof chunk === "string" ? chunk : chunk.toString("utf8");
      const nl = buf.search(/[\r\n]/);
      if (nl >= 0) {
        const rest = buf.slice(nl + 1).replace(/^\n/, "");
        if (rest !== "") stdin.unshift(Buffer.from(rest)); // typed-ahead input belongs to the command
        done(buf.slice(0, nl));
      }
    };
    const onEnd = (): void => done(buf === "" ? null : buf);
    stdin.on("data", onData);
    stdin.once("end", onEnd);
    stdin.once("error", onEnd);
    stdin.resume();
  });
}

/** "writes 134 files under node_modules, modifies package-lock.json, deletes 2 files" */
export function summarizeDiff(d: FsDiff): string {
  const parts: string[] = [];
  const under = (paths: string[]): string => {
    const tops = new Map<string, number>();
    for (const p of paths) {
      const t = p.replace(/^\/+/, "").split("/")[0] ?? p;
      tops.set(t, (tops.get(t) ?? 0) + 1);
    }
    const sorted = [...tops.entries()].sort((a, b) => b[1] - a[1]);
    if (sorted.length === 1 && paths.length > 1) return ` under ${sorted[0][0]}`;
    if (paths.length === 1) return ` (${paths[0]})`;
    return ` (mostly ${sorted.slice(0, 3).map(([t]) => t).join(", ")})`;
  };
  const names = (paths: string[]): string => (paths.length <= 3 ? paths.join(", ") : `${paths.length} files`);
  if (d.writes.length > 0) parts.push(`writes ${d.writes.length} file${d.writes.length === 1 ? "" : "s"}${under(d.writes)}`);
  if (d.mods.length > 0) parts.push(`modifies ${names(d.mods)}`);
  if (d.deletes.length > 0) parts.push(`deletes ${names(d.deletes)}`);
  if (parts.length === 0) return d.summary ?? "no file changes";
  return parts.join(", ") + (d.truncated ? " (truncated)" : "");
}
