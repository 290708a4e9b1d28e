#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Demo: the main job on a sample image. Build an ext4 image from a real directory,
# convert it to a compact CBD image and back, and check that nothing changed.
set -euo pipefail
out=${1:-demo-out}
src=${DEMO_SRC:-/usr/share/doc}
bin=$(swift build -c release --show-bin-path)
mkdir -p "$out"
rm -f "$out"/sample.img "$out"/sample.cbd "$out"/back.img "$out"/empty.cbd
echo "== mke2fs -d $src: a 256 MiB ext4 image of real files"
truncate -s 256M "$out/sample.img"
mke2fs -q -F -t ext4 -d "$src" "$out/sample.img"
echo "== cbd convert sample.img sample.cbd"
"$bin/cbd" convert "$out/sample.img" "$out/sample.cbd"
echo "== cbd convert sample.cbd back.img"
"$bin/cbd" convert "$out/sample.cbd" "$out/back.img"
cmp "$out/sample.img" "$out/back.img" && echo "== cmp: identical"
e2fsck -fn "$out/back.img" >/dev/null && echo "== e2fsck -fn: clean"
ls -ls "$out"/sample.img "$out"/sample.cbd "$out"/back.img
echo "== mkfs.cbd empty.cbd 1G"
"$bin/mkfs.cbd" "$out/empty.cbd" 1G
