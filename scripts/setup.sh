#!/usr/bin/env bash
# Installs everything Substrate and its test suite need on a fresh Debian machine
# (as root, with only Node/npm): Debian packages through apt-get, npm packages
# (Bun itself included, pinned) through `npm ci`. Idempotent and quick when done.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(
  make git ca-certificates curl procps psmisc
  iproute2 nftables util-linux systemd
  bubblewrap fuse-overlayfs fuse3 zstd attr
  debootstrap systemd-container socat openssh-client
  dash ruby vim-tiny
  fzf  # issue 6: the PTY stream test drives fzf
  ripgrep  # issue 9: srt (@anthropic-ai/sandbox-runtime, a bench baseline) refuses to start without rg
  zsh fish  # issue 9: the completion scripts are checked in the shells they are for
)
# Issue 14: the arm64 per-command exec helper (agent/world/cmdexec.ts) is run under qemu-aarch64
# by tests/unit/cmdexec.test.ts on x86-64 machines.
[ "$(uname -m)" = x86_64 ] && DEB_PACKAGES+=(qemu-user)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: run as root, or: sudo apt-get install -y ${missing[*]}" >&2
    exit 4
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm ci is exact (lockfile) but slow to re-run; skip when node_modules matches the lockfile.
stamp=node_modules/.substrate-lock-stamp
want=$(sha256sum package-lock.json | cut -c1-64)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi
node_modules/.bin/bun --version >/dev/null
