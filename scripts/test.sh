#!/usr/bin/env bash
# Runs every test binary of a build: unit tests, then integration tests against the local real
# Kafka and Redis (started here when they are not running, and stopped again if this run started
# them). Counts cmocka's results and prints "N passed, N failed" as the very last line.
set -uo pipefail
cd "$(dirname "$0")/.."

unit_only=0
if [ "${1:-}" = "--unit-only" ]; then unit_only=1; shift; fi
vdir=${1:-build/san}
fuzzdir=${2:-build/fuzz}

export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export JRP_TEST_CONF=${JRP_TEST_CONF:-$PWD/build/local/jrp.conf}
export JRP_BIN=${JRP_BIN:-$PWD/$vdir/bin}
export JRP_ROOT=$PWD

passed=0
failed=0
failures=()
started=0

stop_servers() {
    if [ "$started" = 1 ]; then
        deploy/local/down.sh >/dev/null 2>&1 || echo "test: could not stop the local servers" >&2
        started=0
    fi
}
trap stop_servers EXIT

run_binary() {
    local bin=$1 out rc p f
    out=$(mktemp)
    timeout 900 "$bin" >"$out" 2>&1
    rc=$?
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
    p=${p:-0}
    f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1 # crashed, sanitizer stop or timeout: the binary itself counts as one failure
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -ne 0 ]; then
        failures+=("$bin")
        echo "---- $bin (exit $rc) ----"
        # The failing tests with their messages (stack frames left out), then the end.
        grep -v -E '^ +#[0-9]+ ' "$out" | grep -E -A3 '^\[ +(ERROR|LINE|FAILED) +\]|error:|fail' |
            head -n 60
        echo "---- last lines:"
        tail -n 30 "$out"
    else
        echo "ok   $(basename "$bin"): $p passed"
    fi
    rm -f "$out"
}

shopt -s nullglob
for bin in "$vdir"/tests/unit/test_*; do
    [ -x "$bin" ] && run_binary "$bin"
done

# Fuzz targets (built by `make fuzzers`), each for a bounded time: a crash or leak fails it.
run_fuzzer() {
    local bin=$1 name out rc corpus
    name=$(basename "$bin")
    corpus=$(mktemp -d)
    [ -d "tests/fuzz/corpus/$name" ] && cp -r "tests/fuzz/corpus/$name/." "$corpus/"
    out=$(mktemp)
    timeout 300 "$bin" -max_total_time="${JRP_FUZZ_SECONDS:-20}" -rss_limit_mb=2048 "$corpus" \
        >"$out" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        echo "ok   $name: $(grep -o 'Done [0-9]* runs' "$out" | tail -n 1)"
    else
        failed=$((failed + 1))
        failures+=("$bin")
        echo "---- $bin (exit $rc) ----"
        tail -n 40 "$out"
    fi
    rm -rf "$out" "$corpus"
}
if [ "$unit_only" = 0 ]; then
    for bin in "$fuzzdir"/fuzz_*; do
        [ -x "$bin" ] && run_fuzzer "$bin"
    done
fi

if [ "$unit_only" = 0 ]; then
    if ! deploy/local/up.sh; then
        echo "test: could not start the local Kafka and Redis" >&2
        failed=$((failed + 1))
    else
        grep -q '^kafka=started' build/local/up.state 2>/dev/null && started=1
        for bin in "$vdir"/tests/integration/test_*; do
            [ -x "$bin" ] && run_binary "$bin"
        done
        for script in tests/scripts/test_*.sh; do
            run_binary "$script"
        done
    fi
    stop_servers
fi

if [ "${#failures[@]}" -gt 0 ]; then
    echo "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
