/**
 * What `substrate world verify` runs INSIDE the world: small bash probes that print facts as
 * `key<TAB>value` lines (newlines in values flattened). The host decides PASS/FAIL from the
 * facts (checks.ts), so the verdict never depends on code running in the thing under test.
 *
 * Network safety (house rule: talk only to loopback or namespaces we create): the egress
 * probe connects to 192.0.2.1 (TEST-NET-1, RFC 5737: never routed) and [2001:db8::1]
 * (RFC 3849 documentation prefix) ONLY when the world's network namespace differs from the
 * host's (the host passes its netns inode in SUBSTRATE_VERIFY_HOST_NETNS) and the spec asked
 * for an isolated network (SUBSTRATE_VERIFY_CONNECT=1). A world sharing the host network is
 * never used to connect anywhere: that check fails on the namespace identity alone.
 * Connects have a 3 s cap; a refusal inside the world (nft TCP reset / ICMP admin-prohibited,
 * or no route at all) comes back at once.
 */

export const EGRESS_V4 = "192.0.2.1";
export const EGRESS_V6 = "2001:db8::1";

/** Session-world probe: the project dir comes as $1, sibling/host paths as $2.. */
export const SESSION_PROBE = String.raw`
set +e
P="$1"; OUTSIDE="$2"; HOSTHOME="$3"
out() { printf '%s\t%s\n' "$1" "$(printf '%s' "$2" | tr '\n\t' '  ')"; }

# project writable
if echo verify > "$P/.substrate-verify-write" 2>/tmp/e && [ "$(cat "$P/.substrate-verify-write")" = verify ]; then out project_write ok; rm -f "$P/.substrate-verify-write"; else out project_write "fail: $(cat /tmp/e)"; fi

# system read-only
for d in /usr /etc; do
  if touch "$d/.substrate-verify" 2>/tmp/e; then out "sys_write:$d" "written"; rm -f "$d/.substrate-verify"; else out "sys_write:$d" "denied: $(cat /tmp/e)"; fi
done

# writes outside the project: the host checks these files do not exist afterwards
mkdir -p "$OUTSIDE" 2>/dev/null; echo pwned > "$OUTSIDE/pwned" 2>/tmp/e; out outside_write_rc "$? $(cat /tmp/e)"
mkdir -p "$HOSTHOME" 2>/dev/null; echo pwned > "$HOSTHOME/.substrate-verify-pwned" 2>/tmp/e; out home_write_rc "$? $(cat /tmp/e)"

# processes and namespaces
out pidns "$(readlink /proc/self/ns/pid)"
out netns "$(readlink /proc/self/ns/net)"
out pid1 "$(tr '\0' ' ' < /proc/1/cmdline)"
out nprocs "$(ls -d /proc/[0-9]* 2>/dev/null | wc -l)"

# no_new_privs, seccomp
out nnp "$(awk '/^NoNewPrivs:/{print $2}' /proc/self/status)"
out seccomp "$(awk '/^Seccomp:/{print $2}' /proc/self/status)"

# Landlock: /dev is a writable tmpfs by its mount, but not in the Landlock rw set
if touch /dev/.substrate-verify-ll 2>/tmp/e; then out landlock_dev_write "written"; rm -f /dev/.substrate-verify-ll; else out landlock_dev_write "denied: $(cat /tmp/e)"; fi

# cgroups of this process (the host reads the limits)
out cgroup "$(cat /proc/self/cgroup | tr '\n' ';')"
# ...and the world's own limits as its /sys/fs/cgroup shows them (issue 13: the world has a
# cgroup namespace, so the paths above read "/" and the host cannot find them by name)
out cg_memory "$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max 2>/dev/null)"
out cg_pids "$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max 2>/dev/null)"

# network
out links "$(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | tr '\n' ' ')"
if [ "$SUBSTRATE_VERIFY_CONNECT" = 1 ] && [ -n "$SUBSTRATE_VERIFY_HOST_NETNS" ] && [ "$(readlink /proc/self/ns/net)" != "$SUBSTRATE_VERIFY_HOST_NETNS" ]; then
  for a in ${EGRESS_V4} ${EGRESS_V6}; do
    k=egress4; case "$a" in *:*) k=egress6 ;; esac
    r=$(ip route get "$a" 2>&1)
    if [ $? -ne 0 ]; then out "$k" "noroute: $r"; continue; fi
    t0=$(date +%s%N)
    # A world's TCP goes to its egress gateway (issue 15), which accepts locally and then
    # refuses a name it does not allow: with a 403 line (port 80), or by closing. Only an answer
    # that is not the gateway's refusal means packets left.
    timeout 3 bash -c "exec 3<>/dev/tcp/$a/80 || exit 7; printf 'HEAD / HTTP/1.0\\r\\n\\r\\n' >&3; r=\$(timeout 2 head -c 512 <&3); case \"\$r\" in '') exit 8;; *X-Substrate-Egress:\ denied*) echo \"\$r\" | head -2 | tail -1 >&2; exit 9;; esac; exit 0" 2>/tmp/e
    rc=$?; ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    if [ $rc -eq 0 ]; then out "$k" "connected"; elif [ $rc -eq 124 ]; then out "$k" "timeout"; elif [ $rc -eq 8 ]; then out "$k" "refused ($ms ms): closed by the egress gateway"; elif [ $rc -eq 9 ]; then out "$k" "refused ($ms ms): $(cat /tmp/e)"; else out "$k" "refused ($ms ms): $(cat /tmp/e)"; fi
  done
else
  out egress4 skipped; out egress6 skipped
fi
exit 0
`;

/** Isolated-world probe: mount must be denied; the writes below must show up in the fs diff only. */
export const ISOLATED_PROBE = String.raw`
set +e
P="$1"
out() { printf '%s\t%s\n' "$1" "$(printf '%s' "$2" | tr '\n\t' '  ')"; }
if mount -t tmpfs substrate-verify /tmp 2>/tmp/e; then out mount "allowed"; umount /tmp; else out mount "denied: $(cat /tmp/e)"; fi
echo new > "$P/verify-new.txt"; echo more >> "$P/verify-mod.txt"; rm -f "$P/verify-del.txt"
out writes "$(ls "$P" | tr '\n' ' ')"
exit 0
`;

export function parseFacts(stdout: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of stdout.split("\n")) {
    const i = line.indexOf("\t");
    if (i > 0) m.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return m;
}
