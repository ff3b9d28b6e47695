#!/usr/bin/env bash
# DS0 smoke, Linux: `substrate host doctor --json` and `substrate world doctor --json` must emit
# the exact v1 envelopes (validated with the contract's own schemas), exit codes must match
# them, and the agent must report landlock.supported == true.
#
#   tests/smoke/linux-doctor.sh                      # the `substrate` on PATH
#   SUBSTRATE="bun src/main.ts" tests/smoke/linux-doctor.sh
#
# Needs a running world agent (substrate world warm, or SUBSTRATE_WORLD_SOCKET=<socket of one>).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
read -r -a substrate <<< "${SUBSTRATE:-substrate}"
bun=${BUN:-$root/node_modules/.bin/bun}
expect_platform=${DOCTOR_SMOKE_PLATFORM:-linux}

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
set +e
"${substrate[@]}" host doctor --json > "$out/host.json"
host_rc=$?
"${substrate[@]}" world doctor --json > "$out/world.json"
world_rc=$?
set -e
echo "== ${expect_platform} doctor smoke: host rc=$host_rc, world rc=$world_rc =="
exec "$bun" "$here/doctor-validate.ts" --platform "$expect_platform" \
  --host "$out/host.json" --host-rc "$host_rc" --world "$out/world.json" --world-rc "$world_rc"
