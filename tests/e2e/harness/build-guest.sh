#!/usr/bin/env bash
# Builds the Debian guest the limactl emulator boots (systemd as PID 1 inside
# systemd-nspawn) and caches it as a tar.zst, keyed by a hash of this script, so a
# machine pays the ~50 s debootstrap once. Prints the path of the cached image.
#
#   tests/e2e/harness/build-guest.sh            build if missing, print path
#   tests/e2e/harness/build-guest.sh --force    rebuild even when cached
#
# Env: SUBSTRATE_TEST_CACHE (default /var/cache/substrate-test),
#      SUBSTRATE_GUEST_MIRROR (default: the bookworm mirror this host's apt uses).
# Needs root, debootstrap, zstd (scripts/setup.sh installs them).
set -euo pipefail

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
CACHE_DIR=${SUBSTRATE_TEST_CACHE:-/var/cache/substrate-test}
SUITE=bookworm
# Everything in here is part of the cache key: edit it and the next run rebuilds.
PACKAGES=(
  systemd systemd-sysv dbus libpam-systemd sudo openssh-server
  procps curl python3-minimal ca-certificates
  # what the world agent drives inside the guest
  iproute2 nftables dnsmasq-base util-linux mount attr fuse-overlayfs kmod
  less
  # Lima installs rsync in every guest (boot.Linux/30-install-packages.sh): `limactl copy` prefers it
  rsync
)
# Timers/services that make no sense in a throwaway container guest (and only cost boot time).
MASK_UNITS=(
  apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer
  fstrim.timer systemd-tmpfiles-clean.timer console-getty.service
  systemd-networkd-wait-online.service
)

die() { echo "build-guest: $*" >&2; exit "${2:-1}"; }
[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap + chroot)" 4
for t in debootstrap zstd tar sha256sum flock; do
  command -v "$t" >/dev/null || die "missing '$t'; run: bash scripts/setup.sh" 4
done

key=$(sha256sum "$SCRIPT" | cut -c1-16)
arch=$(dpkg --print-architecture)
image="$CACHE_DIR/guest-$SUITE-$arch-$key.tar.zst"
force=0
[ "${1:-}" = "--force" ] && force=1

mkdir -p "$CACHE_DIR"
# Parallel test files may all ask at once: one builds, the others wait for it.
exec 9>"$CACHE_DIR/.build.lock"
flock 9
if [ "$force" -eq 0 ] && [ -s "$image" ]; then
  echo "$image"
  exit 0
fi

# The mirror this host already uses (deb822 *.sources or one-line *.list); the test
# machines reach only Debian's mirror, so never hardcode another host.
find_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    case "$f" in
    *.sources)
      awk -v suite="$SUITE" '
        /^[[:space:]]*$/ { if (u != "" && s) { print u; exit } u=""; s=0; next }
        /^URIs:/ { u=$2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) s=1 }
        END { if (u != "" && s) print u }' "$f" | head -n1
      ;;
    *) awk -v suite="$SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/) { if ($(i+1) == suite) print $i; break } }' "$f" | head -n1 ;;
    esac
  done | head -n1
}
mirror=${SUBSTRATE_GUEST_MIRROR:-$(find_mirror)}
[ -n "$mirror" ] || die "no apt source for '$SUITE' found in /etc/apt/sources.list*; set SUBSTRATE_GUEST_MIRROR" 3

work=$(mktemp -d "$CACHE_DIR/.build.XXXXXX")
root="$work/rootfs"
# The EXIT trap keeps the script's own exit status: it must never fail itself (under
# `set -e -o pipefail` a grep that matches nothing used to turn every successful build into
# exit 1). tests/unit/lima/build-guest-trap.test.ts runs this function on its own.
cleanup() {
  local rc=$?
  set +e
  # debootstrap mounts proc/sys inside the target; a failed run can leave them behind.
  if [ -d "$root" ]; then
    findmnt -rn -o TARGET | awk -v r="$root" '$0 == r || index($0, r "/") == 1' | sort -r | while read -r m; do umount -l "$m"; done
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

include=$(printf '%s\n' "${PACKAGES[@]}" | grep -v '^#' | paste -sd, -)
start=$(date +%s.%N)
echo "build-guest: debootstrap $SUITE ($arch) from $mirror" >&2
if ! debootstrap --variant=minbase --include="$include" "$SUITE" "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -n 30 "$work/debootstrap.log" >&2
  die "debootstrap failed (log above); check the mirror '$mirror' is reachable" 3
fi

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C "$@"; }

# No default user here: like cloud-init from Lima's user-data, the emulator creates it per
# instance (the macOS login name + uid, home /home/<name>.guest; see lima-emu.ts).

# Empty machine-id: systemd treats the first boot of every unpacked copy as a fresh machine.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"

# sshd: keys only, stream-local forwarding (the ssh2 transport forwards /run/substrate.sock).
cat >"$root/etc/ssh/sshd_config.d/lima.conf" <<'EOF'
# Written by tests/e2e/harness/build-guest.sh (Lima-like sshd settings)
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
UseDNS no
EOF
# Host keys are generated at first boot so every unpacked guest gets its own.
rm -f "$root"/etc/ssh/ssh_host_*
install -d "$root/etc/systemd/system/ssh.service.d"
cat >"$root/etc/systemd/system/ssh.service.d/10-hostkeys.conf" <<'EOF'
[Service]
# Reset the list: Debian's `sshd -t` would fail before the keys exist.
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOF

for u in "${MASK_UNITS[@]}"; do ln -sf /dev/null "$root/etc/systemd/system/$u"; done
in_root systemctl enable ssh.service >/dev/null 2>&1 || true

# No network inside (--private-network): keep apt quiet and the image small.
in_root apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log

tmp_image="$image.tmp.$$"
tar --numeric-owner --xattrs --xattrs-include='*' -C "$root" -cf - . | zstd -q -T0 -6 -o "$tmp_image"
mv -f "$tmp_image" "$image"
# Older keys are dead weight now.
for old in "$CACHE_DIR"/guest-"$SUITE"-"$arch"-*.tar.zst; do
  [ "$old" = "$image" ] || rm -f "$old"
done
end=$(date +%s.%N)
printf 'build-guest: built %s (%s) in %.1f s\n' "$image" "$(du -h "$image" | cut -f1)" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" >&2
echo "$image"
