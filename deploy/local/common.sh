# Shared helpers for deploy/local/up.sh and down.sh (sourced, not run).
# Sets ROOT (repo root), LOCAL (build/local) and the pid/log/config paths, and
# provides pid and port checks. The caller sets PROG (message prefix).
# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source this

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOCAL=$ROOT/build/local
KAFKA_DIR=$LOCAL/kafka
KAFKA_CONF=$KAFKA_DIR/server.properties
KAFKA_PID=$LOCAL/kafka.pid
KAFKA_LOG=$LOCAL/kafka.log
REDIS_DIR=$LOCAL/redis
REDIS_CONF=$REDIS_DIR/redis.conf
REDIS_PID=$LOCAL/redis.pid
REDIS_LOG=$LOCAL/redis.log

say() { echo "$PROG: $*"; }
die() { echo "$PROG: error: $*" >&2; exit 1; }

# our_pid <pidfile> <cmdline-pattern>: print the pid if it is alive and its
# command line contains the pattern (so a recycled pid is never taken as ours).
our_pid() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$2" || return 1
    echo "$pid"
}

# Patterns that identify our processes (redis rewrites its title to "redis-server ip:port").
KAFKA_PATTERN="kafka.Kafka $KAFKA_CONF"
REDIS_PATTERN="redis-server"

# port_open <port>: true if something accepts TCP connections on 127.0.0.1:<port>.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# alive <pid>: true if the process exists and is not a zombie.
alive() {
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ ${st%% *} != Z ]]
}

# stop_pid <pid> <seconds>: SIGTERM, wait up to <seconds>, then SIGKILL.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < $2 * 10; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    say "pid $pid did not stop within $2 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}
