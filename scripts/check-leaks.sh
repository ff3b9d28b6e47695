#!/usr/bin/env bash
# Leak check around the test suite (rule: tests leave no mounts, netns, veths, cgroups or
# processes behind). Kills nothing; prints what it found so the teardown can be fixed.
# Worlds have no veth since issue 15 (lo only, egress through the gateway): the veths left to
# look for are the tests' own links to their test hosts (sbt*, stest*); a world's network
# namespace lives as long as a process holds it, so a leaked one shows as a leaked process
# (the world's unshare, its spawner, its egress helper `__egress`) or as an `ip netns` name.
#
#   check-leaks.sh --snapshot FILE   record what exists now (before the suite)
#   check-leaks.sh --since FILE      fail (exit 1) on anything new since the snapshot
#   check-leaks.sh                   fail on anything at all
set -u
mode=${1:-}
base=${2:-}
items=$(mktemp)
trap 'rm -f "$items"' EXIT
report() { echo "$*" >> "$items"; }

while IFS= read -r l; do report "mount: $l"; done < <(grep -E 'substrate|/overlay/|lima-emu' /proc/self/mountinfo | cut -d' ' -f5)
while IFS= read -r l; do report "netns: $l"; done < <(ip netns list 2>/dev/null)
while IFS= read -r l; do report "veth: $l"; done < <(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^(stest|sbt)' )
# World cgroups nest under the agent's own cgroup (v1: per hierarchy, e.g. memory/<runner>/<id>/
# substrate, pids/system.slice/<unit>/substrate; v2 delegated: <unit>/substrate) and guests' under
# the caller's (memory/<runner>/<id>/lima-emu-*): look a few levels down.
for d in /sys/fs/cgroup/*/substrate /sys/fs/cgroup/substrate /sys/fs/cgroup/*/lima-emu-* /sys/fs/cgroup/*/*/substrate /sys/fs/cgroup/*/*/*/substrate /sys/fs/cgroup/*/*/*/lima-emu-*; do
  [ -d "$d" ] || continue
  while IFS= read -r sub; do report "cgroup: $sub"; done < <(find "$d" -mindepth 1 -maxdepth 1 -type d 2>/dev/null)
done
while IFS= read -r l; do report "process: $l"; done < <(ps -eo pid=,args= | grep -E 'substrate-world-agent|agent/main\.ts|systemd-nspawn|__world|__egress' | grep -v -E 'grep|check-leaks')
for d in /run/substrate/worlds /var/lib/substrate/overlay; do
  [ -d "$d" ] || continue
  for e in "$d"/*; do [ -e "$e" ] && report "left: $e"; done
done

sort -u "$items" -o "$items"
case "$mode" in
  --snapshot) cp "$items" "$base"; echo "check-leaks: snapshot of $(wc -l < "$items") pre-existing item(s)"; exit 0 ;;
  --since) new=$(comm -13 "$base" "$items") ;;
  *) new=$(cat "$items") ;;
esac
if [ -z "$new" ]; then echo "check-leaks: nothing left behind"; exit 0; fi
echo "$new" | sed 's/^/LEAK: /'
echo "check-leaks: the suite left $(echo "$new" | wc -l) item(s) behind (see above)"
exit 1
