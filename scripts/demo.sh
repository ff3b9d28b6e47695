#!/usr/bin/env bash
# The main job, end to end: build the binaries, start a world agent, run commands in a world
# and show what the world isolates. Leaves nothing running that it started.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=$([ "$(uname -m)" = aarch64 ] && echo arm64 || echo x64)
SUB="$PWD/dist/substrate-linux-$arch"
SOCK=${SUBSTRATE_WORLD_SOCKET:-/run/substrate.sock}
export SUBSTRATE_WORLD_SOCKET=$SOCK

demo=$(mktemp -d /tmp/substrate-demo.XXXXXX)
started_pid=""
cleanup() {
  if [ -n "$started_pid" ] && [ -d "/proc/$started_pid" ]; then kill "$started_pid"; fi
  rm -rf "$demo"
}
trap cleanup EXIT
cd "$demo"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "substrate --version"
"$SUB" --version

step "substrate -c 'echo hello from \$(hostname)'   (starts the agent if none answers)"
out=$("$SUB" -c 'echo hello from $(hostname)' 2>"$demo/.err"); cat "$demo/.err"; echo "$out"
started_pid=$(sed -n 's/.*started world agent.*(pid \([0-9]*\)).*/\1/p' "$demo/.err")

step "host processes are invisible: the world sees its own PID namespace"
echo "host: $(ps -e --no-headers | wc -l) processes; world: $("$SUB" -c 'ps -e --no-headers | wc -l') processes"
"$SUB" -c 'ps -e -o pid,comm'

step "writes outside the project fail; \$HOME in the world is your real home, read-only (caches writable per policy)"
"$SUB" -c 'touch /usr/local/bin/evil; touch /etc/evil; echo x > ~/.bashrc-evil && echo "world wrote ~/.bashrc-evil"' || true
[ -e ~/.bashrc-evil ] && echo "host: ~/.bashrc-evil EXISTS (bad)" || echo "host: ~/.bashrc-evil does not exist"

step "writes inside the project land on the host"
"$SUB" -c 'echo written-in-the-world > result.txt'
echo "host sees: $(cat "$demo/result.txt")"

step "the command's exit code is the CLI's exit code"
set +e; "$SUB" -c 'exit 42'; echo "exit code: $?"; set -e

step "egress: allowlisted names go out through the world's gateway; other names are blocked"
# The world has loopback only; the default policy's net.allowed lists registry.npmjs.org.
# A blocked name never leaves the machine, so that half needs no network at all.
if curl -sS -m 5 -o /dev/null https://registry.npmjs.org/ 2>/dev/null; then
  "$SUB" -c 'curl -sS -m 15 -o /dev/null -w "registry.npmjs.org/zod: HTTP %{http_code} through the gateway\n" https://registry.npmjs.org/zod' || true
else
  echo "(this machine has no route to https://registry.npmjs.org, so the allowlisted fetch is skipped; the blocked one below still shows)"
fi
"$SUB" -c 'curl -sS -m 10 -o /dev/null https://example.org/ || echo "curl exit $?"' || true

step "what the agent reports (GET /v1/capabilities)"
curl -s --unix-socket "$SOCK" http://localhost/v1/capabilities | head -c 600; echo

if [ -n "$started_pid" ]; then step "stopping the agent this demo started (pid $started_pid)"; fi
