# SPDX-License-Identifier: Apache-2.0
# Sourced by every case's script: builds the clean image the case then damages.
# $BIN holds the tools, $CBDIMG is cbdimg.py; the case runs in its own scratch folder.
set -euo pipefail
img() { python3 "$CBDIMG" image.cbd "$@"; }
# A 2 MiB logical device of mixed blocks: 64 KiB blocks, compressed, raw and unallocated.
base_image() {
  python3 "$CBDIMG" raw.img make-raw "${1:-2097152}" "${2:-1}"
  "$BIN/cbd" convert -q -b "${3:-64K}" raw.img image.cbd
}
