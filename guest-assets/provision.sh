#!/bin/sh
# Guest provision step for the Substrate world VM (run as root inside the Lima guest by
# `substrate world warm`, after `limactl copy` staged the files). Idempotent: every step
# checks before it changes anything, and a re-run on a healthy guest changes nothing.
#
#   provision.sh --user USER --stage DIR [--writable PATH]... [--repair] [--install-tools]
#                [--dns-upstream IP]...
#   provision.sh --print-dns-upstream      (prints the upstream the pinned DNS would use)
#
#   --user           the SSH (default Lima) user: owns the socket (drop-in SocketUser=USER; group
#                    substrate, 0660 stay), and is added to the `substrate` group
#   --stage          directory holding substrate-world-agent (optional) and the two unit files
#   --writable       a writable host mount (project): added to the service's ReadWritePaths
#   --repair         restart the socket even when no file changed (wrong owner/mode, stopped)
#   --install-tools  apt-get install what the world needs when a tool is missing (a failed
#                    first-boot `provision:` script still lets Lima report the VM ready)
#   --dns-upstream   the pinned resolver's upstream (default: the guest's own, i.e. Lima's)
#
# Prints `provision: ...` progress lines and, last, `PROVISION_RESULT changed=a,b,c`.
# Exit codes: 0 ok, 2 usage, 3 the agent binary is missing, 4 not root, 5 tools missing and
# could not be installed, 1 anything else.
set -eu

user=""
stage=""
repair=0
install_tools=0
print_dns=0
writable=""
dns_upstream=""
while [ $# -gt 0 ]; do
  case "$1" in
  --user) user=$2; shift 2 ;;
  --stage) stage=$2; shift 2 ;;
  --writable) writable="$writable
$2"; shift 2 ;;
  --repair) repair=1; shift ;;
  --install-tools) install_tools=1; shift ;;
  --dns-upstream) dns_upstream="$dns_upstream $2"; shift 2 ;;
  --print-dns-upstream) print_dns=1; shift ;;
  *) echo "provision: unknown argument $1" >&2; exit 2 ;;
  esac
done

# The guest's own upstream resolvers: what Lima set up (netplan `nameservers` from the
# hostagent's DNS, usually 192.168.5.3, DNAT'ed to the host resolver by
# boot.Linux/09-host-dns-setup.sh), so the Mac's VPN / split / corporate DNS keeps working.
# Read from systemd-resolved's upstream list (never its 127.0.0.53 stub); remembered in
# /etc/substrate/dns-upstream, because resolved is disabled once the pin is in place.
UPSTREAM_FILE=${SUBSTRATE_DNS_UPSTREAM_FILE:-/etc/substrate/dns-upstream}
RESOLVED_CONF=${SUBSTRATE_RESOLVED_CONF:-/run/systemd/resolve/resolv.conf}
guest_upstream() {
  { [ -f "$RESOLVED_CONF" ] && awk '$1 == "nameserver" { print $2 }' "$RESOLVED_CONF"; } | grep -v -E '^(127\.|::1$|0\.0\.0\.0$)' | awk '!seen[$0]++' | paste -sd' ' -
}
dns_upstreams() {
  if [ -n "$dns_upstream" ]; then echo $dns_upstream; return; fi
  u=$(guest_upstream)
  if [ -z "$u" ] && [ -s "$UPSTREAM_FILE" ]; then u=$(grep -v '^#' "$UPSTREAM_FILE" | paste -sd' ' -); fi
  echo $u
}
if [ "$print_dns" = 1 ]; then dns_upstreams; exit 0; fi

[ "$(id -u)" = 0 ] || { echo "provision: must run as root (limactl shell substrate sudo ...)" >&2; exit 4; }
[ -n "$stage" ] && [ -d "$stage" ] || { echo "provision: --stage DIR is required and must exist" >&2; exit 2; }

AGENT=/usr/local/bin/substrate-world-agent
UNITS=/etc/systemd/system
# What a world needs (src/lima/layout.ts REQUIRED_TOOLS): command:package.
TOOLS="nft:nftables ip:iproute2 fuse-overlayfs:fuse-overlayfs setfattr:attr getfattr:attr curl:curl"
SOCKET=substrate-world-agent.socket
SERVICE=substrate-world-agent.service
changed=""
note() { echo "provision: $*"; }
mark() { changed="$changed $1"; }

# 0. The tools a world needs. Lima reports a VM ready even when the profile's first-boot
#    package install failed (boot.sh records the failure and still writes boot-done).
missing_pkgs() {
  for tp in $TOOLS; do
    t=${tp%%:*}
    PATH="$PATH:/usr/sbin:/sbin" command -v "$t" >/dev/null 2>&1 || echo "${tp#*:}"
  done | awk '!seen[$0]++' | paste -sd' ' -
}
pkgs=$(missing_pkgs)
if [ -n "$pkgs" ]; then
  if [ "$install_tools" = 1 ] || [ "$repair" = 1 ]; then
    note "installing missing packages: $pkgs"
    export DEBIAN_FRONTEND=noninteractive
    # apt-daily / unattended-upgrades may hold the dpkg lock on a fresh Ubuntu boot.
    if apt-get -o DPkg::Lock::Timeout=600 update >/dev/null 2>&1 &&
      apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $pkgs >/dev/null 2>&1; then
      mark tools
    fi
    pkgs=$(missing_pkgs)
  fi
  if [ -n "$pkgs" ]; then
    echo "provision: the guest lacks packages a world needs and they could not be installed: $pkgs (apt-get failed: no network or a held dpkg lock?)" >&2
    exit 5
  fi
fi

# 1. The group that may use /run/substrate.sock, and the SSH user in it. The socket itself
#    belongs to the SSH user (step 4b), so Lima's SSH master, which logged in before this
#    group existed, needs no reconnect (a reconnect would kill Lima's guestSocket forward).
if ! getent group substrate >/dev/null; then
  groupadd --system substrate
  mark group
fi
if [ -n "$user" ] && ! id -nG "$user" | tr ' ' '\n' | grep -qx substrate; then
  usermod -aG substrate "$user"
  mark membership
fi

# 2. The agent binary: replaced atomically (a running agent keeps its old inode).
if [ -f "$stage/substrate-world-agent" ] && ! cmp -s "$stage/substrate-world-agent" "$AGENT"; then
  install -D -m 0755 -o root -g root "$stage/substrate-world-agent" "$AGENT.new"
  mv -f "$AGENT.new" "$AGENT"
  mark agent
fi
if [ ! -x "$AGENT" ]; then
  echo "provision: $AGENT is missing; copy it in first (substrate world warm does)" >&2
  exit 3
fi

# The host's layout check reads this instead of starting the agent (see src/lima/layout.ts).
stamp=/etc/substrate/agent.stamp
want_stamp=$(stat -c '%s %Y' "$AGENT")
if [ "$(head -n1 "$stamp" 2>/dev/null)" != "$want_stamp" ]; then
  if v=$("$AGENT" --version --json 2>/dev/null); then
    mkdir -p /etc/substrate
    printf '%s\n%s\n' "$want_stamp" "$v" >"$stamp.new" && chmod 0644 "$stamp.new" && mv -f "$stamp.new" "$stamp"
  else
    rm -f "$stamp"
    echo "provision: WARNING: $AGENT --version failed (wrong CPU arch?)" >&2
  fi
fi

# 3. Units, exactly as shipped.
for u in "$SOCKET" "$SERVICE"; do
  if [ -f "$stage/$u" ] && ! cmp -s "$stage/$u" "$UNITS/$u"; then
    install -m 0644 -o root -g root "$stage/$u" "$UNITS/$u"
    mark "$u"
  fi
done

# 4. ProtectSystem=strict makes everything read-only for the agent; the project mounts and the
#    guest home (worlds' fs.write caches are binds of it) must stay writable for the worlds, so
#    they are added in a drop-in, with ProtectHome off (ReadWritePaths=/home does not win over
#    ProtectHome=read-only). Always written: /home is always in it (src/lima/profile.ts mountsDropin).
dropin_dir="$UNITS/$SERVICE.d"
dropin="$dropin_dir/50-writable-mounts.conf"
paths=$(printf '%s\n/home\n' "$writable" | sed '/^$/d' | LC_ALL=C sort -u | sed 's/^/-/' | paste -sd' ' -)
want=$(printf '# Written by substrate provision.sh: writable project mounts and the guest home.\n[Service]\nProtectHome=no\nReadWritePaths=%s\n' "$paths")
if [ "$(cat "$dropin" 2>/dev/null || true)" != "$want" ]; then
  mkdir -p "$dropin_dir"
  printf '%s\n' "$want" >"$dropin"
  mark dropin
fi

# 4b. The socket belongs to the Lima user (as Lima's docker-rootful template does with
#     SocketUser={{.User}}); group substrate and 0660 stay for other members.
sdropin_dir="$UNITS/$SOCKET.d"
sdropin="$sdropin_dir/50-lima-user.conf"
if [ -n "$user" ]; then
  swant=$(printf '# Written by substrate provision.sh: the Lima user owns the socket (group substrate, 0660).\n[Socket]\nSocketUser=%s\n' "$user")
  if [ "$(cat "$sdropin" 2>/dev/null || true)" != "$swant" ]; then
    mkdir -p "$sdropin_dir"
    printf '%s\n' "$swant" >"$sdropin"
    mark socket-owner
  fi
fi

install -d -m 0750 /var/lib/substrate
install -d -m 0700 /var/lib/substrate/overlay

# 5. Pinned DNS (spec Appendix A): dnsmasq on 127.0.0.53 instead of systemd-resolved, whose
#    upstream it keeps (the guest's own = Lima's host-DNS path, see dns_upstreams above; the
#    world agent reads the same /etc/substrate/dns-upstream when the policy names no resolver).
#    Only when the guest has a network at all (the Linux test harness has none).
upstreams=$(dns_upstreams)
if [ -n "$upstreams" ]; then
  mkdir -p "$(dirname "$UPSTREAM_FILE")"
  uwant=$(printf '# The guest upstream resolver(s) (Lima host DNS); written by substrate provision.sh\n'; for u in $upstreams; do echo "$u"; done)
  if [ "$(cat "$UPSTREAM_FILE" 2>/dev/null || true)" != "$uwant" ]; then printf '%s\n' "$uwant" >"$UPSTREAM_FILE"; mark dns-upstream; fi
fi
if [ "${SUBSTRATE_PIN_DNS:-auto}" != off ] && [ -n "$upstreams" ] && command -v dnsmasq >/dev/null && ip route show default 2>/dev/null | grep -q .; then
  conf=/etc/substrate/dnsmasq.conf
  want=$(printf 'port=53\nlisten-address=127.0.0.53\nbind-interfaces\nno-resolv\n'; for u in $upstreams; do echo "server=$u"; done; printf 'cache-size=1000')
  if [ "$(cat "$conf" 2>/dev/null || true)" != "$want" ] || ! systemctl is-active --quiet substrate-dns.service; then
    mkdir -p /etc/substrate
    printf '%s\n' "$want" >"$conf"
    cat >"$UNITS/substrate-dns.service" <<'EOF'
[Unit]
Description=Substrate pinned DNS (dnsmasq on 127.0.0.53)
After=network.target
Conflicts=systemd-resolved.service

[Service]
ExecStart=/usr/sbin/dnsmasq --keep-in-foreground --conf-file=/etc/substrate/dnsmasq.conf
Restart=on-failure

[Install]
WantedBy=multi-user.target
EOF
    systemctl daemon-reload
    systemctl disable --now systemd-resolved.service >/dev/null 2>&1 || true
    if systemctl enable --now substrate-dns.service >/dev/null 2>&1; then
      rm -f /etc/resolv.conf
      echo 'nameserver 127.0.0.53' >/etc/resolv.conf
      mark dns
    else
      note "WARNING: pinned DNS (dnsmasq) failed to start; re-enabling systemd-resolved"
      systemctl enable --now systemd-resolved.service >/dev/null 2>&1 || true
    fi
  fi
else
  note "pinned DNS skipped (no default route, no dnsmasq or no upstream resolver known)"
fi

# 6. systemd: the socket enabled and listening; a changed agent/unit restarts both so the
#    next connection gets the new agent (worlds of the old one are disposable).
if [ -n "$changed" ] || [ "$repair" = 1 ]; then
  systemctl daemon-reload
fi
if [ "$(systemctl is-enabled "$SOCKET" 2>/dev/null || true)" != enabled ]; then
  systemctl enable "$SOCKET" >/dev/null 2>&1
  mark enable
fi
case " $changed " in
*" agent "* | *" $SOCKET "* | *" $SERVICE "* | *" dropin "* | *" socket-owner "* | *" group "*) restart=1 ;;
*) restart=$repair ;;
esac
if [ "$restart" = 1 ]; then
  systemctl stop "$SERVICE" "$SOCKET" >/dev/null 2>&1 || true
  rm -f /run/substrate.sock
  mark restart
fi
if ! systemctl is-active --quiet "$SOCKET"; then
  systemctl start "$SOCKET"
  case " $changed " in *" restart "*) ;; *) mark start ;; esac
fi
note "socket $(stat -c '%U:%G %a' /run/substrate.sock 2>/dev/null || echo missing)"

# 7. Linger: the socket is a system unit, so it needs no user session; user units that
#    talk to it after logout do.
if [ -n "$user" ] && [ "$(loginctl show-user "$user" --property=Linger --value 2>/dev/null || echo no)" != yes ]; then
  note "hint: for user services that must survive logout: sudo loginctl enable-linger $user"
fi

echo "PROVISION_RESULT changed=$(echo $changed | tr ' ' ',')"
