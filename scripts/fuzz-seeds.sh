#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Seed corpora for the fuzz targets: small valid devices (256 KiB, several block sizes,
# compressed, raw and unallocated blocks), their headers, and entries of each variant.
# usage: fuzz-seeds.sh BIN_DIR OUT_DIR
set -euo pipefail
bin=$1; out=$2
mkdir -p "$out"/{header,entry,volume,fsck}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
i=0
for bs in 4K 8K 16K 64K; do
  for ratio in 1 3; do
    img=$tmp/d.cbd; rm -f "$img"
    "$bin/mkfs.cbd" -q -b "$bs" -r "$ratio" "$img" 256K
    # text, random and zero data across the logical device
    { head -c 20000 /usr/share/common-licenses/GPL-3 2>/dev/null || yes cbd | head -c 20000; } > "$tmp/text"
    head -c 12000 /dev/urandom > "$tmp/rand"
    "$bin/cbd" write "$img" -o 0 < "$tmp/text" || true
    "$bin/cbd" write "$img" -o 40000 < "$tmp/rand" || true
    i=$((i + 1))
    cp "$img" "$out/volume/seed-$i"
    cp "$img" "$out/fsck/seed-$i"
    head -c 4096 "$img" > "$out/header/seed-$i"
    # the first table pblk of zone 0 holds entries: two variant-selector bytes, then entry bytes
    for sel in 00 04 05; do
      { printf "\\x$sel\\x00"; dd if="$img" bs=4096 skip=2 count=1 status=none; } > "$out/entry/seed-$i-$sel"
    done
  done
done
echo "seeds in $out: $(find "$out" -type f | wc -l) files"
