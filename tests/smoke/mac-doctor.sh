#!/usr/bin/env bash
# DS0 smoke, macOS: same checks as linux-doctor.sh with platform "macos": host block from the
# Lima probes (limactl list / systemctl is-active / curl /v1/capabilities in the guest), world
# block from the agent inside the guest, landlock.supported == true from the guest kernel.
#
#   tests/smoke/mac-doctor.sh                        # on a Mac, after `substrate world warm`
#
# On Linux the tests run it against the limactl emulator (tests/e2e/harness) with
# SUBSTRATE_DOCTOR_PLATFORM=macos (test hook) and the emulator first on PATH.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DOCTOR_SMOKE_PLATFORM=macos exec bash "$here/linux-doctor.sh"
