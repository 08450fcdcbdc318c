#!/usr/bin/env bash
# Make sure the Debian packages needed to build, test and run jrp locally are installed
# (make deps). As root, installs what is missing; otherwise prints the apt-get line to
# run and fails. Silent and quick when everything is already there.
set -euo pipefail

pkgs=(build-essential pkg-config librdkafka-dev libhiredis-dev protobuf-c-compiler
    libprotobuf-c-dev libuv1-dev libjansson-dev libhttp-parser-dev libcmocka-dev libjemalloc-dev
    redis-server redis-tools clang-format libcurl4-openssl-dev libssl-dev clang libclang-rt-14-dev
    python3 curl ca-certificates)
command -v java >/dev/null || pkgs+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || pkgs+=(maven)
# Validators for the deployment files (tests/scripts/test_deploy.sh): no container engine or
# init system runs them here, they only check the files.
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null ||
    pkgs+=(docker-compose)
command -v systemd-analyze >/dev/null || pkgs+=(systemd)

# One dpkg-query call; it fails, printing nothing, for packages it has never seen.
installed=" $({ dpkg-query -W -f='${Package}=${Status}\n' "${pkgs[@]}" 2>/dev/null || true; } |
    sed -n 's/=install ok installed$//p' | tr '\n' ' ') "
missing=()
for p in "${pkgs[@]}"; do
    [[ $installed == *" $p "* ]] || missing+=("$p")
done
((${#missing[@]})) || exit 0

if ((EUID != 0)); then
    echo "deps: missing packages; run:" >&2
    echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi
echo "deps: installing ${missing[*]}"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
