#!/usr/bin/env bash
# test_deploy: the deployment files are valid where no container engine or systemd runs:
# docker-compose.yml passes `docker compose config` (or Debian's docker-compose v1), names every
# service issue #6 asks for, and uses no Kafka 4.0.0; the systemd units pass systemd-analyze
# verify (only the missing binaries under /usr/local/bin are tolerated); the Dockerfile's runtime
# packages exist in Debian and everything it copies is in the repository.
# Prints cmocka-style totals so scripts/test.sh counts each check.
set -u
cd "$(dirname "$0")/../.."
passed=0
failed=0
check() { # check NAME COMMAND...
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then
        passed=$((passed + 1))
        echo "[       OK ] $name"
    else
        failed=$((failed + 1))
        echo "[  FAILED  ] $name"
        echo "$out" | head -n 20
    fi
}

compose_config() {
    if docker compose version >/dev/null 2>&1; then
        docker compose -f docker-compose.yml config -q
    elif command -v docker-compose >/dev/null; then
        docker-compose -f docker-compose.yml config -q
    else
        echo "neither 'docker compose' nor docker-compose is installed (make deps installs it)"
        return 1
    fi
}
compose_services() {
    local have want missing=0
    if docker compose version >/dev/null 2>&1; then
        have=$(docker compose -f docker-compose.yml config --services)
    else
        have=$(docker-compose -f docker-compose.yml config --services)
    fi
    for want in kafka-1 kafka-2 kafka-3 redis init engine-1 engine-2 gateway dispatch ledger; do
        grep -qx "$want" <<<"$have" || { echo "no service $want"; missing=1; }
    done
    return $missing
}
compose_kafka_version() {
    ! grep -n 'apache/kafka:4\.0\.0\b' docker-compose.yml && grep -q 'apache/kafka:4\.[1-9]' docker-compose.yml
}
systemd_units() {
    command -v systemd-analyze >/dev/null || { echo "systemd-analyze is not installed"; return 1; }
    local f out bad=0
    for f in deploy/systemd/*.service; do
        out=$(systemd-analyze verify "$f" 2>&1 | grep -v 'is not executable: No such file or directory')
        [ -z "$out" ] || { echo "$f: $out"; bad=1; }
    done
    return $bad
}
dockerfile_packages() {
    local p bad=0
    for p in $(sed -n '/^FROM debian:bookworm-slim/,$p' deploy/docker/Dockerfile |
        sed -n '/apt-get install/,/rm -rf/p' | tr ' \\' '\n\n' | grep -E '^lib|^ca-cert'); do
        apt-cache show "$p" >/dev/null 2>&1 || { echo "no Debian package $p"; bad=1; }
    done
    return $bad
}
dockerfile_copies() {
    local src bad=0
    for src in $(sed -n 's/^COPY \([^-][^ ]*\) .*/\1/p' deploy/docker/Dockerfile); do
        [ -e "$src" ] || { echo "COPY source $src is missing"; bad=1; }
    done
    return $bad
}

check compose_config compose_config
check compose_services compose_services
check compose_kafka_version compose_kafka_version
check systemd_units systemd_units
check dockerfile_packages dockerfile_packages
check dockerfile_copies dockerfile_copies
if [ "$failed" -eq 0 ]; then
    echo "[  PASSED  ] $passed test(s)."
else
    echo "[  PASSED  ] $passed test(s)."
    echo "[  FAILED  ] $failed test(s), listed above."
fi
[ "$failed" -eq 0 ]
