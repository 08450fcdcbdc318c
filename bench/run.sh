#!/usr/bin/env bash
# Runs the benchmarks of a build, each printing its numbers beside the baseline it measured in the
# same run. Benchmarks are not tests: they assert nothing and print medians and ratios.
# bench_rules runs alone; bench/engine.sh drives bench_engine against the local Kafka and Redis;
# bench/gateway.sh measures credit checks beside redis-benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
vdir=${1:-build}
echo "== bench_rules"
"$vdir/bench/bench_rules"
echo "== engine (bench/engine.sh)"
bench/engine.sh "$vdir"
echo "== gateway (bench/gateway.sh)"
bench/gateway.sh "$vdir"
