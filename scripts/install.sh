#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs or uninstalls cbd-tools (called by `make install` and `make uninstall`).
#   scripts/install.sh install BIN_DIR   copies the built files from BIN_DIR
#   scripts/install.sh uninstall         removes exactly what install put there
# Honours PREFIX (default /usr/local) and DESTDIR. Install records every file it wrote and
# every folder it created in $DESTDIR$PREFIX/share/cbd-tools/installed; uninstall removes
# those files, then those folders if they are empty, and the record.
#
# Where things go, as e2fsprogs and qemu-utils do it:
#   sbin: mkfs.cbd and fsck.cbd (so that `mkfs -t cbd` and `fsck -t cbd` find them) and
#         cbddump (a root's tool on devices, like dumpe2fs);
#   bin:  cbd (convert, info, serve... work on image files for any user, like qemu-img);
#   share/man/man1,5,8; bash, zsh and fish completions in their standard folders;
#   the systemd unit template cbd-serve@.service in PREFIX/lib/systemd/system (systemd reads
#   /usr/lib and /usr/local/lib), its ExecStart naming PREFIX/bin/cbd;
#   the nbdkit plugin as nbdkit-cbd-plugin.so in nbdkit's plugin folder when PREFIX is /usr
#   (nbdkit --dump-config), else in PREFIX/lib/nbdkit/plugins, where cbd serve looks too.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
root=$DESTDIR$PREFIX
record=$root/share/cbd-tools/installed

plugin_dir() {
  local d=""
  if [ "$PREFIX" = /usr ] && command -v nbdkit >/dev/null; then
    d=$(nbdkit --dump-config | sed -n 's/^plugindir=//p')
  fi
  echo "${d:-$PREFIX/lib/nbdkit/plugins}"
}

list=$(mktemp)
trap 'rm -f "$list"' EXIT

# dir PATH: make a folder (and its parents), recording the ones that did not exist.
dir() {
  local d=$1 missing=()
  while [ ! -d "$d" ]; do missing=("$d" "${missing[@]}"); d=$(dirname "$d"); done
  for m in "${missing[@]}"; do mkdir "$m"; echo "dir $m" >> "$list"; done
}

# put MODE SOURCE TARGET: install one file and record it; programs are stripped.
put() {
  dir "$(dirname "$3")"
  if [ "$1" = 755 ]; then install -s -m 755 "$2" "$3"; else install -m "$1" "$2" "$3"; fi
  echo "file $3" >> "$list"
}

install_all() {
  local bin=$1 tmp t page
  for t in cbd mkfs.cbd fsck.cbd cbddump libnbdkit-cbd-plugin.so; do
    [ -f "$bin/$t" ] || { echo "install: $bin/$t is missing (build first)"; exit 1; }
  done
  if [ -f "$record" ]; then uninstall_all; fi
  put 755 "$bin/mkfs.cbd" "$root/sbin/mkfs.cbd"
  put 755 "$bin/fsck.cbd" "$root/sbin/fsck.cbd"
  put 755 "$bin/cbddump" "$root/sbin/cbddump"
  put 755 "$bin/cbd" "$root/bin/cbd"
  put 755 "$bin/libnbdkit-cbd-plugin.so" "$DESTDIR$(plugin_dir)/nbdkit-cbd-plugin.so"
  for page in man/*.[158]; do
    put 644 "$page" "$root/share/man/man${page##*.}/$(basename "$page")"
  done
  tmp=$(mktemp -d)
  sed "s|@BINDIR@|$PREFIX/bin|" systemd/cbd-serve@.service.in > "$tmp/cbd-serve@.service"
  put 644 "$tmp/cbd-serve@.service" "$root/lib/systemd/system/cbd-serve@.service"
  put 644 systemd/cbd-serve@.socket "$root/lib/systemd/system/cbd-serve@.socket"
  for t in cbd mkfs.cbd fsck.cbd cbddump; do
    "$bin/$t" --generate-completion-script bash > "$tmp/$t.bash"
    "$bin/$t" --generate-completion-script zsh > "$tmp/_$t"
    "$bin/$t" --generate-completion-script fish > "$tmp/$t.fish"
    put 644 "$tmp/$t.bash" "$root/share/bash-completion/completions/$t"
    put 644 "$tmp/_$t" "$root/share/zsh/site-functions/_$t"
    put 644 "$tmp/$t.fish" "$root/share/fish/vendor_completions.d/$t.fish"
  done
  rm -rf "$tmp"
  dir "$(dirname "$record")"
  install -m 644 "$list" "$record"
}

uninstall_all() {
  [ -f "$record" ] || { echo "uninstall: $record is missing: nothing installed under $root"; exit 1; }
  local saved
  saved=$(cat "$record")
  grep '^file ' <<< "$saved" | cut -c6- | while read -r f; do rm -f "$f"; done
  rm -f "$record"
  # Folders install created, deepest first, if they are empty now.
  grep '^dir ' <<< "$saved" | cut -c5- | tac | while read -r d; do rmdir "$d" 2>/dev/null || true; done
}

case "${1:-}" in
  install) install_all "${2:?usage: install.sh install BIN_DIR}" ;;
  uninstall) uninstall_all ;;
  *) echo "usage: scripts/install.sh install BIN_DIR | uninstall"; exit 64 ;;
esac
