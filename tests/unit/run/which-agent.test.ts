/**
 * One answer to "which agent serves me": a non-root user with no agent at all is served by
 * the rootless socket that `substrate -c` starts an agent on; the doctor names that socket
 * (not /run/substrate.sock) and its fix needs no sudo.
 */
import { expect, test } from "bun:test";
import { rootlessSocketPath } from "../../../src/config.ts";
import { runHostDoctor } from "../../../src/doctor/host.ts";
import { fakeSystem, linuxHealthy, settings } from "../doctor/_fake.ts";

test("doctor: the user's rootless socket, not running yet → WARN with `substrate world warm`, no sudo, no FAIL for the socket", async () => {
  const sys = fakeSystem(linuxHealthy({ dirs: ["/dev/fuse"], sockets: [], bins: ["fuse-overlayfs", "nft"] }));
  const sock = rootlessSocketPath(sys.env as NodeJS.ProcessEnv, sys.home);
  const r = await runHostDoctor(sys, settings({ socket_path: sock }));
  expect(r.text).toContain(`WARN  | agent socket: your rootless agent is not running (${sock}); substrate -c starts it on demand\nINFO  | fix: substrate world warm`);
  expect(r.text).not.toContain("no listener");
  expect(r.text).not.toContain("sudo substrate-world-agent");
});
