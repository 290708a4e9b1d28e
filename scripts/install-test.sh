#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The install and package checks of `make test` (issue 14), on the release build:
#  1. make install DESTDIR=<tmp> PREFIX=/usr puts every file where it belongs;
#  2. with the Swift toolchain's folder hidden (unshare -m, an empty tmpfs over it), every
#     installed tool runs: --version, mkfs, fsck, convert both ways, cbd serve with the plugin;
#  3. man -l renders every installed page; bash loads every completion;
#  4. make uninstall leaves nothing behind;
#  5. make deb builds a package with the same files, Depends naming liblz4 and libblkid;
#     dpkg -i installs it, fsck -t cbd dispatches to fsck.cbd, dpkg -r removes it all.
# Needs root (unshare, mount, dpkg -i). One line per check; exit 1 at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "install-test: needs root (unshare, mount, dpkg -i)"; exit 1; }
release=(swift build -c release --static-swift-stdlib)
"${release[@]}" >/dev/null
bin=$("${release[@]}" --show-bin-path)
work=$(mktemp -d /tmp/cbd-install-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
dest=$work/dest
mkdir -p "$dest"
fail() { echo "install-test: FAIL: $*"; exit 1; }
ok() { echo "install-test: ok   $*"; }

# 1. install
make -s install PREFIX=/usr DESTDIR="$dest" >/dev/null
plugindir=$(nbdkit --dump-config | sed -n 's/^plugindir=//p')
for f in usr/sbin/mkfs.cbd usr/sbin/fsck.cbd usr/sbin/cbddump usr/bin/cbd "${plugindir#/}/nbdkit-cbd-plugin.so" \
         usr/share/man/man5/cbd.5 usr/share/man/man8/fsck.cbd.8 usr/share/man/man1/nbdkit-cbd-plugin.1 \
         usr/share/bash-completion/completions/cbd usr/share/zsh/site-functions/_fsck.cbd \
         usr/share/fish/vendor_completions.d/mkfs.cbd.fish usr/lib/systemd/system/cbd-serve@.service usr/lib/systemd/system/cbd-serve@.socket; do
  [ -f "$dest/$f" ] || fail "make install did not put /$f"
done
ok "make install PREFIX=/usr DESTDIR=$dest: $(find "$dest" -type f | wc -l) files"

# 2. without the toolchain
toolchain=$(dirname "$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")")
for t in usr/sbin/mkfs.cbd usr/sbin/fsck.cbd usr/sbin/cbddump usr/bin/cbd "${plugindir#/}/nbdkit-cbd-plugin.so"; do
  if ldd "$dest/$t" | grep -q "$toolchain"; then
    fail "/$t loads from $toolchain: $(ldd "$dest/$t" | grep "$toolchain")"
  fi
done
unshare -m bash -euo pipefail -c '
  dest=$1 toolchain=$2 plugin=$3 work=$4
  mount -t tmpfs none "$toolchain"
  [ -z "$(ls -A "$toolchain")" ] || { echo "toolchain still visible"; exit 1; }
  for t in sbin/mkfs.cbd sbin/fsck.cbd sbin/cbddump bin/cbd; do
    v=$("$dest/usr/$t" --version)
    case "$v" in "$(basename "$t") "*"(liblz4 "*) ;; *) echo "$t --version: $v"; exit 1 ;; esac
  done
  "$dest/usr/sbin/mkfs.cbd" -q "$work/dev.cbd" 16M
  "$dest/usr/sbin/fsck.cbd" -fn "$work/dev.cbd" >/dev/null
  "$dest/usr/sbin/cbddump" "$work/dev.cbd" >/dev/null
  cat /usr/bin/bash /usr/bin/bash /usr/bin/bash > "$work/raw.img"; truncate -s 3000000 "$work/raw.img"
  "$dest/usr/bin/cbd" convert -q "$work/raw.img" "$work/raw.cbd"
  "$dest/usr/bin/cbd" convert -q "$work/raw.cbd" "$work/back.img"
  cmp <(head -c 3000000 "$work/back.img") "$work/raw.img"
  nbdkit -U - "$plugin" file="$work/raw.cbd" --run "nbdcopy \"\$uri\" $work/served.img" 
  cmp <(head -c 3000000 "$work/served.img") "$work/raw.img"
' _ "$dest" "$toolchain" "$dest$plugindir/nbdkit-cbd-plugin.so" "$work" || fail "installed tools without $toolchain"
ok "installed tools run with $toolchain hidden: --version, mkfs, fsck, cbddump, convert both ways, the plugin in nbdkit"

# 3. man pages and completions
for page in "$dest"/usr/share/man/man*/*; do
  out=$(MANWIDTH=80 man -l "$page" 2>&1) || fail "man -l $page"
  grep -q "NAME" <<< "$out" || fail "man -l $page printed no NAME section"
done
for t in cbd mkfs.cbd fsck.cbd cbddump; do
  bash -c "source '$dest/usr/share/bash-completion/completions/$t' && complete -p '$t'" >/dev/null \
    || fail "bash completion for $t does not load"
done
ok "man -l renders $(ls "$dest"/usr/share/man/man*/* | wc -l) pages; bash loads 4 completions"

# 4. uninstall
make -s uninstall PREFIX=/usr DESTDIR="$dest" >/dev/null
left=$(find "$dest" -mindepth 1)
[ -z "$left" ] || fail "make uninstall left: $left"
ok "make uninstall leaves nothing"

# 5. the package
deb=$(./scripts/deb.sh "$bin" "$work")
make -s install PREFIX=/usr DESTDIR="$dest" >/dev/null
rm -r "$dest/usr/share/cbd-tools"
diff <(cd "$dest" && find . -type f | sort) \
     <(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}' | grep -v '^./usr/share/doc/cbd-tools/' \
       | sed 's|^\(./usr/share/man/.*\)\.gz$|\1|' | sort) \
  || fail "the package's files differ from make install's"
depends=$(dpkg-deb -f "$deb" Depends)
# lintian: no error and no warning.
if command -v lintian >/dev/null; then
  tags=$(lintian "$deb" 2>/dev/null | grep -E '^[EW]: ' || true)
  [ -z "$tags" ] || fail "lintian: $tags"
  lint="lintian clean;"
else
  lint="lintian not installed (skipped);"
fi
case "$depends" in *liblz4*) ;; *) fail "Depends lacks liblz4: $depends" ;; esac
case "$depends" in *libblkid*) ;; *) fail "Depends lacks libblkid: $depends" ;; esac
dpkg -s cbd-tools >/dev/null 2>&1 && fail "cbd-tools is installed on this machine already: not touching it"
dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb"
trap 'dpkg -r cbd-tools >/dev/null 2>&1; rm -rf "$work"' EXIT
/usr/sbin/mkfs.cbd -q "$work/fsck-t.cbd" 16M
out=$(fsck -t cbd -n "$work/fsck-t.cbd" 2>&1) || fail "fsck -t cbd -n: $out"
grep -q "0 problems found" <<< "$out" || fail "fsck -t cbd -n did not run fsck.cbd: $out"
[ "$(command -v cbd)" = /usr/bin/cbd ] || fail "cbd is not /usr/bin/cbd"
/usr/bin/cbd serve -r "$work/fsck-t.cbd" --run 'nbdinfo --size "$uri"' >/dev/null \
  || fail "cbd serve did not find the plugin in nbdkit's plugin folder"
nbdkit cbd --version | grep -q "$(cat VERSION)" || fail "nbdkit cbd --version does not name $(cat VERSION)"
# The systemd unit: systemd-analyze verify on an instance (this machine runs no systemd to
# start it), then its ExecStart run by hand as systemd would (%i, %f and the environment file
# filled in): it serves, and SIGTERM stops it with exit 0, the socket gone, the device clean.
unit=/usr/lib/systemd/system/cbd-serve@.service
[ -f "$unit" ] || fail "the package has no $unit"
image=$work/unit.cbd
/usr/sbin/mkfs.cbd -q "$image" 16M
instance=$(systemd-escape --path "$image")
instance_sed=${instance//\\/\\\\}   # the instance in a sed replacement (\x2d must stay \x2d)
analyzed=no
if command -v systemd-analyze >/dev/null; then
  cp "$unit" "$work/cbd-serve@$instance.service"
  cp "${unit%.service}.socket" "$work/cbd-serve@$instance.socket"
  out=$(systemd-analyze verify "$work/cbd-serve@$instance.service" "$work/cbd-serve@$instance.socket" 2>&1) \
    || fail "systemd-analyze verify: $out"
  [ -z "$out" ] || fail "systemd-analyze verify: $out"
  analyzed=yes
fi
mkdir -p /etc/cbd-serve /run/cbd-serve
echo 'CBD_SERVE_OPTIONS="--cache 8M --low-water 5"' > "/etc/cbd-serve/$instance.env"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit" | sed "s|%i|$instance_sed|g; s|%f|$image|g")
# The unit's ExecStart as systemd runs it, after the words given (systemd-socket-activate);
# run it with & only: the background job's own process execs the server, so $! is the server.
run_exec_start() {
  CBD_SERVE_OPTIONS=; . "/etc/cbd-serve/$instance.env"
  read -ra words <<< "$exec_start"
  argv=()
  for w in "${words[@]}"; do
    # shellcheck disable=SC2206  # systemd splits an unbraced $VAR at whitespace, as this does
    if [ "$w" = '$CBD_SERVE_OPTIONS' ]; then argv+=($CBD_SERVE_OPTIONS); else argv+=("$w"); fi
  done
  exec "$@" "${argv[@]}"
}
run_exec_start 2>"$work/unit.log" &
server=$!
sock=/run/cbd-serve/$instance.sock
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
uri=$(sed -n 's/^cbd: serving .* at //p' "$work/unit.log")
size=$(nbdinfo --size "$uri" 2>&1) || fail "the unit's server does not serve: $size $(cat "$work/unit.log")"
tr '\0' ' ' < "/proc/$server/cmdline" | grep -q "cache=8388608" \
  || fail "the environment file's options were not used: $(tr '\0' ' ' < "/proc/$server/cmdline")"
kill -TERM "$server"
wait "$server" || fail "the unit's server did not stop with exit 0 on SIGTERM: $(cat "$work/unit.log")"
[ ! -e "$sock" ] || fail "the unit's socket $sock is left after the stop"
/usr/sbin/fsck.cbd -fn "$image" >/dev/null || fail "the device is not clean after the unit's stop"
# Socket activation: cbd-serve@.socket's ListenStream passed by systemd-socket-activate as
# systemd passes it; the same ExecStart serves on it, stops cleanly and leaves it to systemd.
activated=no
if command -v systemd-socket-activate >/dev/null; then
  listen=$(sed -n 's/^ListenStream=//p' "${unit%.service}.socket" | sed "s|%i|$instance_sed|g")
  [ "$listen" = "$sock" ] || fail "the socket unit listens on $listen, the service on $sock"
  run_exec_start systemd-socket-activate -l "$listen" 2>"$work/socket.log" &
  server=$!
  for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
  encoded=$(/usr/bin/python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$sock")
  size=$(nbdinfo --size "nbd+unix:///?socket=$encoded" 2>&1) \
    || fail "the socket-activated server does not serve: $size $(cat "$work/socket.log")"
  kill -TERM "$server"
  wait "$server" || fail "the socket-activated server did not stop with exit 0: $(cat "$work/socket.log")"
  /usr/sbin/fsck.cbd -fn "$image" >/dev/null || fail "the device is not clean after the socket-activated stop"
  rm -f "$sock"
  activated=yes
fi
rm -f "/etc/cbd-serve/$instance.env"; rmdir /etc/cbd-serve /run/cbd-serve 2>/dev/null || true
files=$(dpkg -L cbd-tools | while read -r f; do [ -f "$f" ] && echo "$f"; done)
dpkg -r cbd-tools >/dev/null || fail "dpkg -r cbd-tools"
for f in $files; do [ ! -e "$f" ] || fail "dpkg -r left $f"; done
ok "$(basename "$deb") ($(du -k "$deb" | cut -f1) KiB): same files as make install, Depends: $depends; $lint" \
   "dpkg -i, fsck -t cbd, cbd serve, the systemd units (verified: $analyzed; ExecStart served and stopped; socket-activated: $activated), dpkg -r"
