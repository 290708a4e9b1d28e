#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Prints the libraries nbdkit must preload to load the plugin built under ThreadSanitizer:
# the toolchain's TSan runtime and the libdispatch it needs (nbdkit itself is not
# instrumented). For CBD_SERVE_PRELOAD, which cbd serve passes to nbdkit as LD_PRELOAD.
set -euo pipefail
toolchain=$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")
runtime=$(ls "$toolchain"/lib/clang/*/lib/linux/libclang_rt.tsan-x86_64.so 2>/dev/null | head -1)
dispatch=$toolchain/lib/swift/linux/libdispatch.so
[ -f "$runtime" ] && [ -f "$dispatch" ] || { echo "tsan-runtime: no TSan runtime in $toolchain" >&2; exit 1; }
echo "$runtime $dispatch"
