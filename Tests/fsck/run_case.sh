#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs one fsck test case the way e2fsprogs' tests/f_* do: build the damaged image with
# the case's script, run fsck.cbd (first with the case's options, default -fy), then a
# second time with -fy; write both outputs, each ending with its exit status.
# usage: run_case.sh CASE_DIR WORK_DIR   (BIN: folder of the built tools)
set -uo pipefail
case_dir=$(cd "$1" && pwd); work=$2
here=$(cd "$(dirname "$0")" && pwd)
BIN=$(cd "$BIN" && pwd)
export CBDIMG=$here/cbdimg.py BIN
mkdir -p "$work" && cd "$work"
bash -c "source '$here/base.sh'; source '$case_dir/script'" > build.log 2>&1 || { echo "script failed:"; cat build.log; exit 1; }
args=$(cat "$case_dir/args" 2>/dev/null || echo "-fy")
[ -f "$case_dir/untouched" ] && cp image.cbd image.before
"$BIN/fsck.cbd" $args image.cbd > out.1 2>&1; echo "Exit status is $?" >> out.1
"$BIN/fsck.cbd" -fy image.cbd > out.2 2>&1; echo "Exit status is $?" >> out.2
