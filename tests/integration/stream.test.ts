/**
 * `GET /v1/stream` on a real agent: vim and fzf driven through the socket (spec: "PTY
 * handles vim/fzf without corrupting bytes"), binary round trips in both directions,
 * resize/signal control, pipes mode, disconnect kills, detach + re-attach with replay,
 * many sessions at once, protocol errors.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { eventually, openStream, pidsMentioning, spansIn, startSourceAgent, StreamClient, tempProject, worldDirs, type ApiAgent } from "./api-helpers.ts";

let agent: ApiAgent;
let proj: string;
const start = (s: Record<string, unknown>) => openStream(agent.socket, { cwd: proj, agent_id: "tester", ...s });

beforeAll(async () => {
  proj = tempProject();
  agent = await startSourceAgent();
});
afterAll(async () => {
  const state = agent.stateDir;
  await agent.stop();
  rmSync(proj, { recursive: true, force: true });
  expect(pidsMentioning(state)).toEqual([]);
  expect(worldDirs(state)).toEqual([]);
});

describe("PTY byte-cleanliness", () => {
  test("vim: insert text, :wq — the file is written and the screen shows vim's own output", async () => {
    const file = join(proj, "notes.txt");
    const s = await start({ cmd: `vim -u NONE -i NONE -N ${file}`, cols: 100, rows: 30 });
    await s.started();
    await s.untilText("notes.txt"); // vim drew its status line
    // \x1b (Escape) leaves insert mode; UTF-8 and a tab go through untouched.
    s.send("ihello from vim\tä→€\x1b");
    s.send(":wq\r");
    expect(await s.exit()).toEqual({ code: 0, signal: null });
    expect(readFileSync(file, "utf8")).toBe("hello from vim\tä→€\n");
    const screen = s.text();
    expect(screen).toContain("\x1b["); // real terminal control sequences reached us
    expect(screen).toMatch(/notes\.txt.*\[New\]/);
  });

  test("fzf: filter a list by typing, Enter picks the match", async () => {
    const s = await start({ cmd: "printf 'apple\\nbanana\\ncherry\\n' | fzf --no-mouse > picked.txt", cols: 80, rows: 20 });
    await s.started();
    await s.untilText("3/3");
    s.send("ban");
    await s.untilText("1/3");
    s.send("\r");
    expect((await s.exit()).code).toBe(0);
    expect(readFileSync(join(proj, "picked.txt"), "utf8")).toBe("banana\n");
  });

  test("a binary blob (all 256 byte values, 64 KiB) round-trips unchanged in both directions", async () => {
    const blob = Buffer.alloc(65536);
    for (let i = 0; i < blob.length; i++) blob[i] = (i * 7 + (i >> 8)) & 0xff;
    writeFileSync(join(proj, "blob.in"), blob);
    // raw mode: no echo, no line editing, no \n → \r\n: the PTY passes bytes as they are
    const s = await start({ cmd: `stty raw -echo; printf READY; head -c ${blob.length} > blob.out; printf DONE; cat blob.in`, cols: 80, rows: 24 });
    await s.started();
    await s.untilText("READY");
    for (let i = 0; i < blob.length; i += 4096) s.send(blob.subarray(i, i + 4096));
    await s.untilText("DONE");
    expect((await s.exit()).code).toBe(0);
    expect(readFileSync(join(proj, "blob.out")).equals(blob)).toBe(true);
    const out = s.bytes();
    const back = out.subarray(out.indexOf("DONE") + 4);
    expect(back.length).toBe(blob.length);
    expect(back.equals(blob)).toBe(true);
  });
});

describe("control messages", () => {
  test("resize reaches the PTY (stty size) and SIGWINCH reaches the program", async () => {
    // a loop of short sleeps, not `read`: bash runs a trap only between commands
    const s = await start({ cmd: "trap 'echo WINCH; stty size' WINCH; stty size; while :; do sleep 0.05; done", cols: 80, rows: 24 });
    await s.untilText("24 80");
    s.control({ type: "resize", cols: 132, rows: 43 });
    await s.untilText("WINCH");
    await s.untilText("43 132");
    s.control({ type: "signal", signal: "SIGTERM" });
    expect((await s.exit()).signal).toBe("SIGTERM");
  });

  test("signal: SIGTERM ends the command with 143; Ctrl-C as a byte interrupts like a terminal", async () => {
    const s = await start({ cmd: "printf go; sleep 60" });
    await s.untilText("go");
    s.control({ type: "signal", signal: "SIGTERM" });
    expect(await s.exit()).toEqual({ code: 143, signal: "SIGTERM" });

    const c = await start({ cmd: "bash -c 'trap \"echo INT; exit 5\" INT; printf go; sleep 60 & wait'" });
    await c.untilText("go");
    c.send("\x03");
    await c.untilText("INT");
    expect((await c.exit()).code).toBe(5);
  });

  test("pty: false — stdout as binary, stderr as messages, stdin streamed then eof", async () => {
    const s = await start({ cmd: "cat; echo oops >&2", pty: false });
    await s.started();
    s.send("line one\n");
    s.send(Buffer.from([0, 1, 2, 255]));
    s.control({ type: "eof" });
    expect((await s.exit()).code).toBe(0);
    expect(s.bytes().equals(Buffer.concat([Buffer.from("line one\n"), Buffer.from([0, 1, 2, 255])]))).toBe(true);
    const err = s.messages.filter((m) => m.type === "stderr").map((m) => Buffer.from((m as { data_b64: string }).data_b64, "base64").toString());
    expect(err.join("")).toBe("oops\n");
  });

  test("runtime budget kills a stream command (timed_out)", async () => {
    const s = await start({ cmd: "sleep 60", agent_id: "stream-budget", budget: { max_runtime_ms: 300 } });
    expect(await s.exit()).toEqual({ code: 137, signal: "SIGKILL", timed_out: true });
  });
});

describe("session lifetime", () => {
  test("disconnect kills a normal session", async () => {
    const marker = `disc-${Bun.randomUUIDv7()}`;
    const s = await start({ cmd: `printf up; exec -a ${marker} sleep 300` });
    await s.untilText("up");
    await eventually(async () => expect(pidsMentioning(marker).length).toBe(1));
    s.close();
    await eventually(async () => expect(pidsMentioning(marker)).toEqual([]));
  });

  test("detachable: survives the disconnect, re-attach replays recent output, then goes on live", async () => {
    const marker = `det-${Bun.randomUUIDv7()}`;
    const s = await start({ cmd: `echo before-detach; read x; echo after=$x; exec -a ${marker} sleep 0.2`, detachable: true });
    const started = await s.started();
    expect(started.detachable).toBe(true);
    await s.untilText("before-detach");
    s.close();
    await s.closed;
    await Bun.sleep(100);
    // still running: `read` waits for input
    const a = new StreamClient(agent.socket);
    await a.opened;
    a.control({ type: "attach", session_id: started.session_id, agent_id: "tester" });
    await a.until(() => a.msg("attached") !== undefined, "attached");
    expect(a.msg("attached")).toMatchObject({ session_id: started.session_id, span_id: started.span_id, truncated: false });
    await a.untilText("before-detach"); // replayed
    a.send("zz\r");
    await a.untilText("after=zz");
    expect((await a.exit()).code).toBe(0);
    await eventually(async () => expect(pidsMentioning(marker)).toEqual([]));
  });

  test("detach message, then re-attach after the command exited: replay + exit", async () => {
    const s = await start({ cmd: "read x; echo got-$x", detachable: true });
    const st = await s.started();
    s.control({ type: "detach" });
    await s.closed;
    const a = new StreamClient(agent.socket);
    await a.opened;
    a.control({ type: "attach", session_id: st.session_id, agent_id: "tester" });
    await a.until(() => a.msg("attached") !== undefined, "attached");
    a.send("q\r");
    await a.untilText("got-q");
    a.close();
    await a.closed;
    await Bun.sleep(300); // the command exits while nobody is attached
    const b = new StreamClient(agent.socket);
    await b.opened;
    b.control({ type: "attach", session_id: st.session_id, agent_id: "tester" });
    expect((await b.exit()).code).toBe(0);
    expect(b.text()).toContain("got-q");
  });

  test("a non-detachable session cannot be attached; unknown ids and other agents get 404", async () => {
    const s = await start({ cmd: "sleep 30" });
    const st = await s.started();
    const a = new StreamClient(agent.socket);
    await a.opened;
    a.control({ type: "attach", session_id: st.session_id, agent_id: "tester" });
    expect(await a.closed).toBe(4400);
    const b = new StreamClient(agent.socket);
    await b.opened;
    b.control({ type: "attach", session_id: st.session_id, agent_id: "someone-else" });
    expect(await b.closed).toBe(4404);
    s.close();
  });

  test("many sessions at once (24 concurrent PTYs) each get their own output and exit code", async () => {
    const ss = await Promise.all(Array.from({ length: 24 }, (_, i) => start({ cmd: `echo session-${i}-$((${i} * 3)); exit ${i % 5}` })));
    const exits = await Promise.all(ss.map((s) => s.exit()));
    ss.forEach((s, i) => {
      expect(s.text()).toContain(`session-${i}-${i * 3}`);
      expect(exits[i]!.code).toBe(i % 5);
    });
  });

  test("stream commands are traced like executes (issue 17: one start): command_complete with parent, replay context", async () => {
    const s = await start({ cmd: "exit 4", env: { SUBSTRATE_SPAN_ID: "spn_01a2425e-0000-7000-8000-000000000001", SUBSTRATE_SESSION_ID: "ses_01a2425e-0000-7000-8000-000000000002" } });
    const st = await s.started();
    await s.exit();
    const spans = (await spansIn(agent.trace)).filter((x) => x.span_id === st.span_id);
    expect(spans.map((x) => x.event_type)).toEqual(["command_complete"]);
    expect(spans[0]).toMatchObject({
      exit: 4,
      pty: true,
      component: "api",
      agent_id: "tester",
      world_id: st.world_id,
      parent_span: "spn_01a2425e-0000-7000-8000-000000000001",
      session_id: "ses_01a2425e-0000-7000-8000-000000000002",
    });
    expect(spans[0]!.replay_context).toBeTruthy();
  });

  test("isolated stream sessions (issue 17): the project is untouched and exit carries the fs diff", async () => {
    const s = await start({ cmd: "echo iso > stream-iso.txt", isolated: true, pty: false });
    await s.started();
    await s.exit();
    const exit = s.msg("exit")!;
    expect(exit.code).toBe(0);
    expect(exit.fs_diff?.writes).toContain("stream-iso.txt");
    expect(require("node:fs").existsSync(`${proj}/stream-iso.txt`)).toBe(false);
  });
});

describe("protocol errors", () => {
  test("binary before start, bad JSON, missing agent_id, unknown first message → error frame + close 4400", async () => {
    for (const first of [Buffer.from([1, 2, 3]), "{not json", JSON.stringify({ type: "start", cmd: "true" }), JSON.stringify({ type: "resize", cols: 1, rows: 1 })]) {
      const c = new StreamClient(agent.socket);
      await c.opened;
      if (typeof first === "string") c.ws.send(first);
      else c.send(first);
      expect(await c.closed).toBe(4400);
      expect(c.msg("error")?.code).toBe("bad_request");
    }
    const c = new StreamClient(agent.socket);
    await c.opened;
    c.control({ type: "start", cmd: "true" });
    await c.closed;
    expect(c.msg("error")?.message).toContain("agent_id is required for API calls");
  });

  test("bad control message after start: error frame, session goes on", async () => {
    const s = await start({ cmd: "read x; echo ok-$x" });
    await s.started();
    s.control({ type: "resize", cols: -1, rows: 5 });
    await s.until(() => s.msg("error") !== undefined, "error");
    s.send("y\r");
    await s.untilText("ok-y");
    expect((await s.exit()).code).toBe(0);
  });

  test("a bad cwd is refused before anything starts", async () => {
    const c = await openStream(agent.socket, { cmd: "true", agent_id: "t", cwd: "/definitely/not/here" });
    expect(await c.closed).toBe(4400);
    expect(c.msg("error")?.message).toContain("does not exist");
    expect(existsSync("/definitely/not/here")).toBe(false);
  });
});

describe("detach TTL", () => {
  test("a detached session nobody re-attaches is killed after SUBSTRATE_STREAM_DETACH_TTL_MS", async () => {
    const short = await startSourceAgent({ SUBSTRATE_STREAM_DETACH_TTL_MS: "300" });
    const dir = tempProject();
    try {
      const marker = `ttl-${Bun.randomUUIDv7()}`;
      const s = await openStream(short.socket, { cmd: `exec -a ${marker} sleep 300`, cwd: dir, agent_id: "ttl", detachable: true });
      const st = await s.started();
      await eventually(async () => expect(pidsMentioning(marker).length).toBe(1));
      s.close();
      await eventually(async () => expect(pidsMentioning(marker)).toEqual([]));
      const a = new StreamClient(short.socket);
      await a.opened;
      a.control({ type: "attach", session_id: st.session_id, agent_id: "ttl" });
      expect(await a.closed).toBe(4404);
    } finally {
      await short.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
