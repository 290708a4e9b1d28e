#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the Debian binary package cbd-tools_VERSION_ARCH.deb (called by `make deb`) with the
# ordinary Debian tools: what `make install PREFIX=/usr` installs, a copyright file and a
# changelog, the Depends line from dpkg-shlibdeps. Usage: scripts/deb.sh BIN_DIR [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?usage: deb.sh BIN_DIR [OUT_DIR]}
out=${2:-.}
version=$(cat VERSION)
arch=$(dpkg --print-architecture)
name=cbd-tools_${version}_${arch}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/$name

PREFIX=/usr DESTDIR=$stage ./scripts/install.sh install "$bin" >/dev/null
# dpkg keeps its own record of the files: install's is not shipped.
rm -r "$stage/usr/share/cbd-tools"
# Debian policy (lintian): manual pages compressed; a bash completion is sourced, not run,
# so it has no #! line.
find "$stage/usr/share/man" -type f -name '*.[0-9]' -exec gzip -9n {} +
for f in "$stage"/usr/share/bash-completion/completions/*; do sed -i '1{/^#!/d}' "$f"; done

doc=$stage/usr/share/doc/cbd-tools
mkdir -p "$doc"
cat > "$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: cbd-tools
Comment: Offline tools for compressed block devices (the dm-compress on-disk format).

Files: *
Copyright: 2026 the cbd-tools authors
License: Apache-2.0

License: Apache-2.0
 Licensed under the Apache License, Version 2.0 (the "License");
 you may not use this file except in compliance with the License.
 You may obtain a copy of the License at
 .
 https://www.apache.org/licenses/LICENSE-2.0
 .
 Unless required by applicable law or agreed to in writing, software
 distributed under the License is distributed on an "AS IS" BASIS,
 WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 See the License for the specific language governing permissions and
 limitations under the License.
 .
 On Debian systems, the complete text of the Apache License, Version 2.0
 can be found in "/usr/share/common-licenses/Apache-2.0".
EOF
# A native package (no Debian revision): its changelog is changelog.gz.
gzip -9n -c > "$doc/changelog.gz" <<EOF
cbd-tools ($version) unstable; urgency=medium

  * Package built from the source tree with make deb.

 -- cbd-tools maintainers <maintainers@cbd-tools.org>  $(date -R)
EOF

# dpkg-shlibdeps wants a source package's debian/control beside it.
mkdir -p "$work/src/debian"
printf 'Source: cbd-tools\n\nPackage: cbd-tools\nArchitecture: any\n' > "$work/src/debian/control"
elves=$(find "$stage" -type f -exec sh -c '[ "$(head -c 4 "$1" | od -An -c | tr -d " ")" = "177ELF" ]' _ {} \; -print)
depends=$(cd "$work/src" && dpkg-shlibdeps -O $elves 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
case "$depends" in
  *liblz4*libblkid*|*libblkid*liblz4*) ;;
  *) echo "deb: dpkg-shlibdeps gave no liblz4 and libblkid dependency: '$depends'"; exit 1 ;;
esac

mkdir -p "$stage/DEBIAN"
cat > "$stage/DEBIAN/control" <<EOF
Package: cbd-tools
Version: $version
Architecture: $arch
Maintainer: cbd-tools maintainers <maintainers@cbd-tools.org>
Installed-Size: $(du -sk "$stage/usr" | cut -f1)
Depends: $depends
Recommends: nbdkit
Section: admin
Priority: optional
Description: tools for compressed block devices (dm-compress format)
 mkfs.cbd creates a compressed block device, fsck.cbd checks and repairs it,
 cbddump prints its metadata, and cbd converts raw images to and from it,
 resizes it, reads and writes it, and serves it live over NBD through nbdkit
 and the included nbdkit plugin.
EOF
mkdir -p "$out"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out/$name.deb" >/dev/null
echo "$out/$name.deb"
# lintian (run by scripts/install-test.sh) reports no error and no warning on this package;
# scripts/install-test.sh fails on any.
