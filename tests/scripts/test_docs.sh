#!/usr/bin/env bash
# test_docs: the pages generated from the code are the code's: docs/configuration.md equals what
# `jrpctl config keys` prints from the config table (make docs regenerates it).
set -u
cd "$(dirname "$0")/../.."
bin=${JRP_BIN:-build/bin}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if "$bin/jrpctl" config keys >"$out" && diff -u docs/configuration.md "$out" >/dev/null; then
    echo "[       OK ] configuration_md_matches_the_table"
    echo "[  PASSED  ] 1 test(s)."
    exit 0
fi
echo "[  FAILED  ] configuration_md_matches_the_table: run make docs"
diff -u docs/configuration.md "$out" | head -n 20
echo "[  PASSED  ] 0 test(s)."
echo "[  FAILED  ] 1 test(s), listed above."
exit 1
