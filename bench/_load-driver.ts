/**
 * The 64 × 100 load of issue 18 ("64 concurrent agents × 100 executes while worlds are killed
 * at random"), shared by bench/load.ts (the figures) and tests/integration/faults-load.test.ts
 * (the guarantees, scaled down). Talks to a running world agent's socket.
 *
 * Clients: `clients` concurrent loops, each `perClient` executes in a row, as agent ids
 * `load-<c % agents>` (one session world per agent id). Faults (`killEveryMs` > 0): a killer
 * picks a random live world every `killEveryMs` and alternately SIGKILLs its spawner (abrupt:
 * the world is lost under running commands) or DELETEs it through the API (graceful).
 *
 * Every request's answer is classified: `ok` (200, the command's exit 0 and exact output),
 * `killed` (200, exit 128+N: its world was deleted under it), `json_error` (a JSON error body, e.g. 503 when the world died under the command), or a
 * failure: `transport` (no HTTP answer), `non_json`, `wrong` (200 with the wrong output).
 */
import { readFileSync } from "node:fs";
import { percentile } from "./_stats.ts";

export interface LoadOptions {
  socket: string;
  projectDir: string;
  clients: number;
  perClient: number;
  /** distinct agent ids (= session worlds) */
  agents: number;
  /** 0 = no faults */
  killEveryMs: number;
  /** the command, given client/index (default: echo a marker) */
  cmd?: (c: number, i: number) => string;
}

export interface Answer {
  c: number;
  i: number;
  ms: number;
  kind: "ok" | "killed" | "json_error" | "transport" | "non_json" | "wrong";
  status?: number;
  code?: string;
  span_id?: string;
  detail?: string;
}

export interface LoadResult {
  answers: Answer[];
  wallMs: number;
  execPerSec: number;
  p50: number;
  p99: number;
  ok: number;
  killed: number;
  jsonErrors: number;
  failures: Answer[];
  kills: { sigkill: number; delete: number };
  worldsSeen: string[];
}

const marker = (c: number, i: number) => `ok-${c}-${i}`;

async function post(socket: string, body: unknown): Promise<Response> {
  return fetch("http://localhost/v1/execute", { method: "POST", unix: socket, headers: { "content-type": "application/json" }, body: JSON.stringify(body) } as RequestInit);
}

/** The spawner (`__world-serve`) of a world: a process whose command line names its state dir. */
function spawnerOf(worldId: string): number | null {
  for (const p of require("node:fs").readdirSync("/proc") as string[]) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cl = readFileSync(`/proc/${p}/cmdline`, "utf8");
      if (cl.includes("__world-serve") && cl.includes(worldId)) return Number(p);
    } catch {}
  }
  return null;
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const answers: Answer[] = [];
  const seen = new Set<string>();
  const kills = { sigkill: 0, delete: 0 };
  let running = true;
  const killer = (async () => {
    if (!(o.killEveryMs > 0)) return;
    let n = 0;
    while (running) {
      await Bun.sleep(o.killEveryMs);
      if (!running) break;
      try {
        const r = await fetch("http://localhost/v1/worlds", { unix: o.socket } as RequestInit);
        const worlds = ((await r.json()) as { worlds: { id: string }[] }).worlds;
        if (!worlds.length) continue;
        const w = worlds[Math.floor(Math.random() * worlds.length)]!;
        if (n++ % 2 === 0) {
          const pid = spawnerOf(w.id);
          if (pid) {
            process.kill(pid, "SIGKILL"); // a descendant of the agent under test (never anything else)
            kills.sigkill++;
          }
        } else {
          await fetch(`http://localhost/v1/worlds/${w.id}`, { method: "DELETE", unix: o.socket } as RequestInit);
          kills.delete++;
        }
      } catch {}
    }
  })();

  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: o.clients }, async (_, c) => {
      for (let i = 0; i < o.perClient; i++) {
        const t = performance.now();
        const a: Answer = { c, i, ms: 0, kind: "transport" };
        try {
          const res = await post(o.socket, { cmd: o.cmd?.(c, i) ?? `echo ${marker(c, i)}`, cwd: o.projectDir, agent_id: `load-${c % o.agents}` });
          a.status = res.status;
          const text = await res.text();
          let body: any;
          try {
            body = JSON.parse(text);
          } catch {
            a.kind = "non_json";
            a.detail = text.slice(0, 200);
          }
          if (body !== undefined) {
            if (res.status === 200) {
              const out = Buffer.from(body.stdout_b64 ?? "", "base64").toString();
              a.span_id = body.span_id;
              if (body.world_id) seen.add(body.world_id);
              // a command whose world was deleted under it ends killed (128+N): a result too
              a.kind = body.exit === 0 && (o.cmd || out === `${marker(c, i)}\n`) ? "ok" : body.exit >= 128 ? "killed" : "wrong";
              if (a.kind === "wrong") a.detail = `exit ${body.exit} out ${JSON.stringify(out.slice(0, 100))}`;
            } else if (body?.error?.code && body?.error?.message) {
              a.kind = "json_error";
              a.code = body.error.code;
              a.detail = body.error.message;
            } else {
              a.kind = "non_json";
              a.detail = text.slice(0, 200);
            }
          }
        } catch (e) {
          a.detail = (e as Error).message;
        }
        a.ms = performance.now() - t;
        answers.push(a);
      }
    }),
  );
  const wallMs = performance.now() - t0;
  running = false;
  await killer;
  const lat = answers.map((a) => a.ms).sort((a, b) => a - b);
  return {
    answers,
    wallMs,
    execPerSec: (answers.length / wallMs) * 1000,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    ok: answers.filter((a) => a.kind === "ok").length,
    killed: answers.filter((a) => a.kind === "killed").length,
    jsonErrors: answers.filter((a) => a.kind === "json_error").length,
    failures: answers.filter((a) => a.kind !== "ok" && a.kind !== "killed" && a.kind !== "json_error"),
    kills,
    worldsSeen: [...seen],
  };
}
