#!/usr/bin/env bash
# Demo: format a sparse image with mkfs.cbd and show what it wrote.
set -euo pipefail
out=${1:-demo-out}
bin=$(swift build -c release --show-bin-path)
mkdir -p "$out"
rm -f "$out/demo.cbd"
echo "== mkfs.cbd $out/demo.cbd 1G"
"$bin/mkfs.cbd" "$out/demo.cbd" 1G
echo "== on disk: $(du -k "$out/demo.cbd" | cut -f1) KiB allocated of $(stat -c %s "$out/demo.cbd") bytes"
