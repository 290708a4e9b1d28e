#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The serve tests (Tests/serve/serve_test.py, then fault_test.py) against the nbdkit plugin
# built under ThreadSanitizer. nbdkit itself is not instrumented, so the sanitizer's runtime (and
# libdispatch, which that runtime needs) is preloaded into the server only; the tools are the
# ordinary debug build. Any report fails the run. Usage: scripts/tsan-serve.sh [CASE...]
set -euo pipefail
cd "$(dirname "$0")/.."
preload=$(scripts/tsan-runtime.sh)
swift build >/dev/null
swift build --sanitize=thread --scratch-path .build-tsan --product nbdkit-cbd-plugin >/dev/null
bin=$(mktemp -d /tmp/cbd-tsan-bin.XXXXXX)
logs=$(mktemp -d /tmp/cbd-tsan-logs.XXXXXX)
trap 'rm -rf "$bin"; [ -n "${KEEP_LOGS:-}" ] || rm -rf "$logs"' EXIT
for t in cbd mkfs.cbd fsck.cbd cbddump; do cp "$(swift build --show-bin-path)/$t" "$bin/"; done
cp .build-tsan/debug/libnbdkit-cbd-plugin.so "$bin/"
# A report stops the server (halt_on_error), so its case fails: the report is printed all the same.
status=0
CBD_SERVE_PRELOAD="$preload" TSAN_OPTIONS="log_path=$logs/report halt_on_error=1" \
  /usr/bin/python3 Tests/serve/serve_test.py "$bin" "$@" || status=$?
if [ $# -eq 0 ]; then  # and the failing backing store (no case names: all of it)
  CBD_SERVE_PRELOAD="$preload" TSAN_OPTIONS="log_path=$logs/report halt_on_error=1" \
    /usr/bin/python3 Tests/serve/fault_test.py "$bin" 2>/dev/null | tail -1 || status=$?
fi
if ls "$logs"/report* >/dev/null 2>&1; then
  cat "$logs"/report*
  echo "tsan-serve: ThreadSanitizer reported the above"
  exit 1
fi
echo "tsan-serve: no ThreadSanitizer report"
exit $status
