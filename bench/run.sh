#!/usr/bin/env bash
# Runs every benchmark of a build, each printing its numbers beside the baseline it measured in the
# same run. Benchmarks are not tests: they assert nothing and print medians and ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
vdir=${1:-build}
for b in "$vdir"/bench/bench_*; do
    [ -x "$b" ] || continue
    echo "== $(basename "$b")"
    "$b"
done
