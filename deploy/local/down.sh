#!/usr/bin/env bash
# Stop the local Kafka and Redis started by deploy/local/up.sh (make down): only the
# processes named by build/local/{kafka,redis}.pid, and only if they are still ours.
# Data is kept; JRP_DOWN_WIPE=1 also deletes the Kafka and Redis data.
set -euo pipefail
PROG=down
# shellcheck source=deploy/local/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

stopped=()
# stop <name> <pidfile> <pattern> <seconds>
stop() {
    local pid
    if pid=$(our_pid "$2" "$3"); then
        stop_pid "$pid" "$4"
        stopped+=("$1 (pid $pid)")
    fi
    rm -f "$2"
}
stop kafka "$KAFKA_PID" "$KAFKA_PATTERN" 30
stop redis "$REDIS_PID" "$REDIS_PATTERN" 30
rm -f "$LOCAL/up.state"

wiped=''
if [[ ${JRP_DOWN_WIPE:-} == 1 ]]; then
    rm -rf "$KAFKA_DIR/data" "$REDIS_DIR"
    wiped='; kafka and redis data wiped'
fi
if ((${#stopped[@]})); then
    list=$(printf '%s, ' "${stopped[@]}")
    say "stopped ${list%, }$wiped"
else
    say "nothing running$wiped"
fi
