#!/bin/sh
# Substrate installer (POSIX sh: dash, bash, zsh, busybox ash).
#
#   curl -fsSL <release base>/latest/download/install.sh | sh
#   sh install.sh [--version X.Y.Z] [--prefix DIR] [--base URL] [--force]
#   sh install.sh --uninstall [--prefix DIR]
#
# Downloads substrate-<version>-<os>-<arch>.tar.gz and SHA256SUMS from the release base
# (GitHub layout: <base>/download/v<version>/<file>, <base>/latest/download/<file>),
# refuses a tarball whose sha256 differs from SHA256SUMS, and installs:
#   <prefix>/bin/substrate
#   <prefix>/share/{bash-completion/completions,zsh/site-functions,fish/vendor_completions.d}/…
#   <prefix>/share/doc/substrate/{LICENSE,README.md}
#   <prefix>/share/substrate/install-manifest   (what --uninstall removes, and nothing else)
# <prefix> is ~/.substrate, or /usr/local as root, or --prefix.
# Exit codes: 0 ok, 1 failed (checksum mismatch, broken archive), 2 usage or a substrate
# binary this script did not install is in the way (--force replaces it),
# 3 a download or a required tool is unavailable, 4 platform not supported.
set -eu

# Replaced by scripts/release.ts with the release's own base URL.
SUBSTRATE_RELEASE_BASE_DEFAULT='https://github.com/substrate-dev/substrate/releases'

say() { printf 'substrate-install: %s\n' "$*" >&2; }
die() { # die CODE MESSAGE [HINT]
  _code=$1
  say "$2"
  [ $# -gt 2 ] && say "hint: $3"
  exit "$_code"
}

usage() {
  cat <<'EOF'
usage: install.sh [--version X.Y.Z] [--prefix DIR] [--base URL] [--force]
       install.sh --uninstall [--prefix DIR]

  --version X.Y.Z  install this version (default: the latest release)
  --prefix DIR     install into DIR/bin (default: ~/.substrate, or /usr/local as root)
  --base URL       release base URL (default: $SUBSTRATE_RELEASE_BASE, else the project's)
  --force          overwrite a substrate binary this installer did not install
  --uninstall      remove exactly the files listed in the install manifest
EOF
}

want_version=""
prefix=""
base="${SUBSTRATE_RELEASE_BASE:-$SUBSTRATE_RELEASE_BASE_DEFAULT}"
action=install
force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --version | --prefix | --base)
      [ $# -ge 2 ] || die 2 "$1 needs a value" "see: install.sh --help"
      case "$1" in
        --version) want_version=$2 ;;
        --prefix) prefix=$2 ;;
        --base) base=$2 ;;
      esac
      shift 2
      ;;
    --version=*) want_version=${1#*=}; shift ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --base=*) base=${1#*=}; shift ;;
    --force) force=1; shift ;;
    --uninstall) action=uninstall; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die 2 "unknown argument: $1" "see: install.sh --help" ;;
  esac
done
want_version=${want_version#v}
case "$want_version" in
  "" | [0-9]*.[0-9]*.[0-9]*) ;;
  *) die 2 "--version $want_version is not a version like 0.1.0" ;;
esac
base=${base%/}

if [ -z "$prefix" ]; then
  if [ "$(id -u)" = 0 ]; then
    prefix=/usr/local
  else
    [ -n "${HOME:-}" ] || die 2 "HOME is not set" "pass --prefix DIR"
    prefix="$HOME/.substrate"
  fi
fi
case "$prefix" in
  /*) ;;
  *) prefix="$(pwd)/$prefix" ;;
esac
prefix=${prefix%/}
bindir="$prefix/bin"
manifest="$prefix/share/substrate/install-manifest"

# --- platform ------------------------------------------------------------------------------
detect_platform() {
  _s=$(uname -s 2>/dev/null || echo unknown)
  _m=$(uname -m 2>/dev/null || echo unknown)
  case "$_s" in
    Linux) os=linux ;;
    Darwin) os=darwin ;;
    MINGW* | MSYS* | CYGWIN* | Windows_NT)
      die 4 "Windows is not supported ($_s)" "run Substrate inside WSL2 (Linux), then run this installer there" ;;
    *) die 4 "unsupported operating system: $_s" "Substrate ships for Linux and macOS (x86_64, arm64)" ;;
  esac
  case "$_m" in
    x86_64 | amd64) arch=x64 ;;
    arm64 | aarch64) arch=arm64 ;;
    i?86 | x86 | armv[5-7]* | armhf | arm)
      die 4 "32-bit systems are not supported ($_m)" "Substrate ships for 64-bit x86_64 and arm64 only" ;;
    *) die 4 "unsupported CPU architecture: $_m" "Substrate ships for x86_64 and arm64" ;;
  esac
  # An x86_64 shell under Rosetta on Apple silicon: install the native arm64 build.
  if [ "$os" = darwin ] && [ "$arch" = x64 ] && [ "$(sysctl -n sysctl.proc_translated 2>/dev/null || echo 0)" = 1 ]; then
    arch=arm64
  fi
}

# --- tools ---------------------------------------------------------------------------------
sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d' ' -f1
  else
    die 3 "neither sha256sum nor shasum found: cannot verify the download" "install coreutils (Linux) or use macOS's shasum"
  fi
}

fetch() { # fetch URL FILE
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 2 -o "$2" "$1" || return 1
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1" || return 1
  else
    die 3 "neither curl nor wget found" "install curl (e.g. sudo apt-get install -y curl)"
  fi
}

# manifest_has MANIFEST PATH: PATH is listed as a file (exact match; paths may hold spaces).
manifest_has() {
  awk -v p="$2" '$1 == "file" && substr($0, length($1) + length($2) + 3) == p { f = 1 } END { exit !f }' "$1"
}

# --- uninstall -----------------------------------------------------------------------------
uninstall() {
  if [ ! -f "$manifest" ]; then
    say "nothing to uninstall: no install manifest at $manifest"
    [ -e "$bindir/substrate" ] && say "($bindir/substrate exists but was not installed by this script; left alone)"
    exit 0
  fi
  # Files first — a file changed since it was installed is no longer ours: kept — then the
  # directories this installer created, deepest first (rmdir keeps any that still hold
  # something else).
  have_sha=0
  if command -v sha256sum >/dev/null 2>&1 || command -v shasum >/dev/null 2>&1; then have_sha=1; fi
  while IFS=' ' read -r kind sum path; do
    [ "$kind" = file ] && [ -n "$path" ] && [ -e "$path" ] || continue
    if [ "$have_sha" = 1 ] && [ "$(sha256_of "$path")" != "$sum" ]; then
      say "kept $path (changed since it was installed)"
    else
      rm -f "$path"
    fi
  done <"$manifest"
  rm -f "$manifest"
  dirs=$(sed -n 's/^dir - //p' "$manifest.dirs" 2>/dev/null || true)
  rm -f "$manifest.dirs"
  printf '%s\n' "$dirs" | awk 'NF { print length($0) " " $0 }' | sort -rn | cut -d' ' -f2- |
    while IFS= read -r d; do rmdir "$d" 2>/dev/null || true; done
  say "removed substrate from $prefix"
}

if [ "$action" = uninstall ]; then
  uninstall
  exit 0
fi

# --- install -------------------------------------------------------------------------------
detect_platform
# Checked up front: sha256_of runs in $(…), where its own `die` would only end the subshell.
command -v sha256sum >/dev/null 2>&1 || command -v shasum >/dev/null 2>&1 ||
  die 3 "neither sha256sum nor shasum found: cannot verify the download" "install coreutils (Linux) or use macOS's shasum"
tmp=$(mktemp -d 2>/dev/null || mktemp -d -t substrate-install)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM HUP # run the EXIT trap (cleanup) on a signal too

case "$base" in
  https://*) ;;
  http://127.* | http://localhost[:/]* | http://\[::1\]*) ;;
  http://*) say "warning: $base is plain http; the checksum file comes over the same channel" ;;
  *) die 2 "release base $base is not an http(s) URL" "set SUBSTRATE_RELEASE_BASE or --base" ;;
esac

if [ -n "$want_version" ]; then
  sums_url="$base/download/v$want_version/SHA256SUMS"
else
  sums_url="$base/latest/download/SHA256SUMS"
fi
fetch "$sums_url" "$tmp/SHA256SUMS" ||
  die 3 "could not download $sums_url" "check the network, the version (--version), or SUBSTRATE_RELEASE_BASE"

# The checksum list names the tarballs, so it also tells which version "latest" is.
line=$(grep -E "^[0-9a-f]{64}  substrate-[0-9][^ ]*-$os-$arch\.tar\.gz\$" "$tmp/SHA256SUMS" | head -n 1 || true)
[ -n "$line" ] || die 4 "the release has no build for $os-$arch" "supported: linux-x64, linux-arm64, darwin-arm64, darwin-x64"
want_sum=${line%% *}
tarball=${line##* }
version=${tarball#substrate-}
version=${version%-"$os"-"$arch".tar.gz}
[ -z "$want_version" ] || [ "$version" = "$want_version" ] ||
  die 1 "SHA256SUMS of v$want_version lists $tarball" "the release is inconsistent; report it"

# Idempotent: same version, same tarball checksum, every installed file unchanged → nothing to do.
if [ -f "$manifest" ] && grep -qx "release $version $want_sum" "$manifest"; then
  intact=1
  while IFS=' ' read -r kind sum path; do
    [ "$kind" = file ] || continue
    if [ ! -f "$path" ] || [ "$(sha256_of "$path")" != "$sum" ]; then intact=0; break; fi
  done <"$manifest"
  if [ "$intact" = 1 ]; then
    say "substrate $version is already installed in $bindir (nothing to do)"
    exit 0
  fi
fi

if [ -e "$bindir/substrate" ] && ! { [ -f "$manifest" ] && manifest_has "$manifest" "$bindir/substrate"; } && [ "$force" != 1 ]; then
  die 2 "$bindir/substrate exists and was not installed by this script" "remove it, choose --prefix, or pass --force to replace it"
fi

url="$base/download/v$version/$tarball"
say "downloading $url"
fetch "$url" "$tmp/$tarball" || die 3 "could not download $url" "check the network or SUBSTRATE_RELEASE_BASE"
got_sum=$(sha256_of "$tmp/$tarball")
if [ "$got_sum" != "$want_sum" ]; then
  die 1 "checksum mismatch for $tarball: expected $want_sum, got $got_sum — refusing to install (the download is corrupt or was tampered with; nothing was changed)" \
    "retry; if it persists, report it"
fi

mkdir "$tmp/x"
tar -xzf "$tmp/$tarball" -C "$tmp/x" || die 1 "could not unpack $tarball" "retry the download"
src="$tmp/x/substrate-$version-$os-$arch"
[ -f "$src/substrate" ] || die 1 "$tarball does not contain substrate-$version-$os-$arch/substrate" "report it"

# Record the directories we create (so --uninstall can remove them if left empty).
new_dirs="$tmp/dirs"
: >"$new_dirs"
[ -f "$manifest.dirs" ] && cat "$manifest.dirs" >"$new_dirs"
ensure_dir() {
  [ -d "$1" ] && return 0
  ensure_dir "$(dirname "$1")"
  mkdir "$1" || die 1 "cannot create $1" "choose a writable --prefix"
  printf 'dir - %s\n' "$1" >>"$new_dirs"
}

new_manifest="$tmp/manifest"
printf 'release %s %s\n' "$version" "$want_sum" >"$new_manifest"
# place SRC DEST MODE: copy next to DEST, then rename (atomic, even over a running binary).
place() {
  ensure_dir "$(dirname "$2")"
  cp "$1" "$2.install-tmp" && chmod "$3" "$2.install-tmp" && mv -f "$2.install-tmp" "$2" ||
    die 1 "cannot write $2" "choose a writable --prefix (or run as root for /usr/local)"
  printf 'file %s %s\n' "$(sha256_of "$2")" "$2" >>"$new_manifest"
}
place "$src/substrate" "$bindir/substrate" 755
place "$src/completions/substrate.bash" "$prefix/share/bash-completion/completions/substrate" 644
place "$src/completions/_substrate" "$prefix/share/zsh/site-functions/_substrate" 644
place "$src/completions/substrate.fish" "$prefix/share/fish/vendor_completions.d/substrate.fish" 644
place "$src/LICENSE" "$prefix/share/doc/substrate/LICENSE" 644
place "$src/README.md" "$prefix/share/doc/substrate/README.md" 644

# Files an older install had and this one does not: remove them (they were ours).
if [ -f "$manifest" ]; then
  while IFS=' ' read -r kind _sum path; do
    [ "$kind" = file ] || continue
    manifest_has "$new_manifest" "$path" || rm -f "$path"
  done <"$manifest"
fi
ensure_dir "$(dirname "$manifest")"
sort -u "$new_dirs" >"$manifest.dirs"
cp "$new_manifest" "$manifest"

installed=$("$bindir/substrate" --version 2>&1) || die 1 "installed, but $bindir/substrate does not run: $installed" "report it with: uname -a"
say "installed $installed in $bindir"
case ":${PATH:-}:" in
  *":$bindir:"*) ;;
  *)
    say "add it to your PATH (e.g. in ~/.profile, ~/.bashrc or ~/.zshrc):"
    printf '  export PATH="%s:$PATH"\n' "$bindir" >&2
    ;;
esac
if [ "$os" = darwin ]; then
  say "next: substrate world warm    (creates and starts the Lima VM the world runs in)"
else
  say "next: substrate world doctor  (checks that this kernel can enforce the world's isolation)"
fi
