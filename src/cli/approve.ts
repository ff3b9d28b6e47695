/**
 * `substrate approve [ID] [--deny]` (issue 18.5): the human answers pending approvals — an
 * agent's `request_scopes` (the world agent) and the host proxy's policy approvals — on the
 * approver channel (src/api/approver.ts), never on the API socket the asking client uses.
 *
 * It needs a person: stdin must be a terminal and every answer is asked for on /dev/tty
 * (exit 2 otherwise, nothing answered). `--list` only shows what is pending (no terminal
 * needed). Exit: 0 answered (or nothing pending), 2 no terminal / unknown id, 3 no approver
 * socket answers.
 */
import { defineCommand } from "citty";
import { closeSync, existsSync, openSync, readFileSync, readSync, writeSync } from "node:fs";
import type { PendingApproval } from "../contract/approver.ts";
import type { ApprovalChoice } from "../contract/policy.ts";
import { CliError, ExitCode } from "./_errors.ts";

const say = (line: string) => process.stderr.write(`substrate: ${line}\n`);

/** The approver sockets to ask: --socket, else the world agent's and the host proxy's (those that exist). */
async function approverSockets(explicit: string | undefined): Promise<string[]> {
  if (explicit) return [explicit];
  const [{ approveSocketFor }, { effectiveConfig }, { defaultProxySocket }] = await Promise.all([
    import("../api/approver.ts"),
    import("../config.ts"),
    import("../proxy/server.ts"),
  ]);
  const cfg = effectiveConfig({});
  const all = [approveSocketFor(cfg.socket_path), approveSocketFor(defaultProxySocket())];
  return [...new Set(all)].filter((p) => existsSync(p));
}

/** A line read from the controlling terminal (blocking), after writing `prompt` there. */
function askTty(fd: number, prompt: string): string {
  writeSync(fd, prompt);
  const buf = Buffer.alloc(256);
  let line = "";
  for (;;) {
    const n = readSync(fd, buf, 0, buf.length, null);
    if (n <= 0) return line;
    line += buf.subarray(0, n).toString("utf8");
    if (line.includes("\n")) return line.split("\n")[0]!.trim();
  }
}

function describe(a: PendingApproval): string {
  const who = `${a.kind === "scopes" ? `agent ${a.agent_id ?? "?"}` : `policy ${a.policy_id ?? "?"}`}, uid ${a.uid}`;
  return [
    `approval ${a.approval_id} (${who}, asked ${a.requested_at})`,
    `  ${a.kind === "scopes" ? "asks for" : "command"}: ${a.command}`,
    `  reason:   ${a.reason}`,
    ...(a.kind === "policy" ? [`  cwd:      ${a.cwd}`] : []),
    ...(a.diff_preview ? [`  preview:  ${a.diff_preview}`] : []),
  ].join("\n");
}

const CHOICE: Record<string, ApprovalChoice> = { o: "once", once: "once", s: "session", session: "session", a: "always", always: "always", d: "deny", deny: "deny" };

export default defineCommand({
  meta: { name: "approve", description: "Answer pending approvals (scopes, policy) at this terminal" },
  args: {
    id: { type: "positional", description: "approval id (apr_…); default: each pending one in turn", required: false },
    deny: { type: "boolean", description: "Deny it (asks to confirm)" },
    list: { type: "boolean", description: "Only list what is pending (no terminal needed)" },
    json: { type: "boolean", description: "With --list: as JSON" },
    socket: { type: "string", description: "Approver socket (default: beside the agent's and the proxy's sockets)", valueHint: "PATH" },
  },
  async run({ args }) {
    const { ApproverClient } = await import("../api/approver.ts");
    const { ApiError } = await import("../api/service.ts");
    const id = args.id ? String(args.id) : undefined;
    if (id !== undefined && !/^apr_[0-9a-f-]{36}$/.test(id)) throw new CliError(ExitCode.USAGE, `${JSON.stringify(id)} is not an approval id (apr_…)`, "`substrate approve --list` shows the pending ones");
    if (args.deny && !id) throw new CliError(ExitCode.USAGE, "--deny needs the approval id", "substrate approve apr_… --deny");

    // A person, not a program: refuse before contacting anything.
    let tty = -1;
    if (!args.list) {
      if (!process.stdin.isTTY)
        throw new CliError(
          ExitCode.USAGE,
          "approvals are answered by a person at a terminal, and stdin is not a terminal; nothing was answered",
          "run `substrate approve` in an interactive terminal (`substrate approve --list` shows what is pending)",
        );
      try {
        tty = openSync("/dev/tty", "r+");
      } catch (e) {
        throw new CliError(ExitCode.USAGE, `approvals are answered at a terminal, and /dev/tty cannot be opened (${(e as NodeJS.ErrnoException).code}); nothing was answered`, "run `substrate approve` in an interactive terminal");
      }
    }
    try {
      const sockets = await approverSockets(args.socket);
      if (!sockets.length)
        throw new CliError(ExitCode.UNAVAILABLE, "no approver socket found (beside the world agent's socket or the proxy's)", "is the world agent running? `substrate world status`; or pass --socket PATH");
      const pending: { a: PendingApproval; client: InstanceType<typeof ApproverClient> }[] = [];
      let reached = 0;
      let lastErr: unknown;
      for (const path of sockets) {
        const client = new ApproverClient(path);
        try {
          for (const a of await client.list()) pending.push({ a, client });
          reached++;
        } catch (e) {
          lastErr = e;
        }
      }
      if (!reached) {
        const e = lastErr as InstanceType<typeof ApiError>;
        throw new CliError(e?.code === "forbidden" ? ExitCode.USAGE : ExitCode.UNAVAILABLE, e?.message ?? "no approver socket answers", e?.hint);
      }
      if (args.list) {
        if (args.json) console.log(JSON.stringify({ approvals: pending.map((p) => p.a) }, null, 2));
        else if (!pending.length) say("no pending approvals");
        else for (const p of pending) console.log(describe(p.a));
        return;
      }
      const todo = id ? pending.filter((p) => p.a.approval_id === id) : pending;
      if (id && !todo.length) throw new CliError(ExitCode.USAGE, `no pending approval ${id} for you`, "it was answered already, expired, or the agent restarted (`substrate approve --list`)");
      if (!todo.length) {
        say("no pending approvals");
        return;
      }
      // Residual risk (docs/SECURITY.md "Approvals"): with legacy TIOCSTI a program sharing this
      // terminal can push keystrokes into its input; say so where the person answers.
      try {
        if (readFileSync("/proc/sys/dev/tty/legacy_tiocsti", "utf8").trim() === "1")
          writeSync(tty, "note: dev.tty.legacy_tiocsti=1 lets a program sharing this terminal type into it (sysctl dev.tty.legacy_tiocsti=0 stops that)\n");
      } catch {}
      for (const { a, client } of todo) {
        writeSync(tty, `${describe(a)}\n`);
        let choice: ApprovalChoice | undefined;
        if (args.deny) {
          const yes = askTty(tty, "Deny it? [y/N] ").toLowerCase();
          if (yes !== "y" && yes !== "yes") {
            say(`left ${a.approval_id} pending`);
            continue;
          }
          choice = "deny";
        } else {
          for (let tries = 0; tries < 3 && !choice; tries++) {
            const ans = askTty(tty, `Answer [o]nce, [s]ession, [a]lways, [d]eny, [k]eep pending: `).toLowerCase();
            if (ans === "k" || ans === "keep" || ans === "") break;
            choice = CHOICE[ans];
          }
          if (!choice) {
            say(`left ${a.approval_id} pending`);
            continue;
          }
        }
        try {
          const r = await client.answer(a.approval_id, choice);
          say(
            choice === "deny"
              ? `denied ${a.approval_id}`
              : r.kind === "scopes"
                ? `granted ${r.granted?.join(", ") || "nothing new"} to agent ${r.agent_id} (${choice})`
                : `approved ${r.command} (${choice}); the client retries it`,
          );
        } catch (e) {
          if (e instanceof ApiError) throw new CliError(e.code === "unavailable" ? ExitCode.UNAVAILABLE : ExitCode.USAGE, e.message, e.hint);
          throw e;
        }
      }
    } finally {
      if (tty >= 0) closeSync(tty);
    }
  },
});
