#!/usr/bin/env bash
# Gateway benchmark of issue #4: credit checks per second and p50/p99 latency of jrp-gateway under
# wrk (64 connections, 2 threads, BENCH_SECONDS s), beside redis-benchmark doing the Redis read a
# check needs (HGET of one subject's state) at the same 64 connections in the same run. Each check
# is also recorded on <prefix>checks (acks=all) before it is answered, as in production.
# Targets: at least 0.5x redis-benchmark's rate, p99 <= 5 ms; the verdict is printed, not asserted.
# The verdict is on the default (gateway.check_record = acked); an extra row shows the same run
# with gateway.check_record = queued (answered before the ack; BENCH_QUEUED=0 leaves it out).
# Starts its own gateway (and, to seed the subject's state, the engine) against the local Kafka and
# Redis of `make up` (started here if they are not running), in a private namespace it deletes at
# the end. Usage: bench/gateway.sh [BUILD_DIR]   (default build: make -j2 bins first)
# BENCH_GW_CONF="key = value" adds configuration lines (e.g. "gateway.linger_ms = 1") to compare.
set -euo pipefail
cd "$(dirname "$0")/.."
PROG=bench-gateway
# shellcheck source=deploy/local/common.sh
source deploy/local/common.sh # say, die, alive, stop_pid, port_open

VDIR=${1:-build}
GW=$VDIR/bin/jrp-gateway ENGINE=$VDIR/bin/jrp-engine CTL=$VDIR/bin/jrpctl
SECONDS_RUN=${BENCH_SECONDS:-10}
CONNS=64 THREADS=2
ENT=91350100M000100Y43
for f in "$GW" "$ENGINE" "$CTL"; do [[ -x $f ]] || die "$f is missing: make -j2 bins"; done

TMP=$(mktemp -d) PIDS=() SERVERS_STARTED='' P=''
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do alive "$pid" && stop_pid "$pid" 15; done
    if [[ -n $P ]]; then
        local url
        url=$(sed -n 's/^redis.url *= *//p' build/local/jrp.conf)
        timeout 60 redis-cli -u "$url" --scan --pattern "$P:*" |
            timeout 60 xargs -r -n 1000 redis-cli -u "$url" unlink >/dev/null || true
        # and its topics (bench_engine is built beside the services by make bench)
        if [[ -x $VDIR/bench/bench_engine && -f ${CONF:-} ]]; then
            timeout 90 "$VDIR/bench/bench_engine" drop "$CONF" >/dev/null || true
        fi
    fi
    rm -rf "$TMP"
    if [[ -n $SERVERS_STARTED ]]; then deploy/local/down.sh || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools and servers ---------------------------------------------------------------------------
for tool in wrk:wrk redis-benchmark:redis-tools curl:curl; do
    cmd=${tool%%:*} pkg=${tool#*:}
    command -v "$cmd" >/dev/null && continue
    ((EUID == 0)) || die "$cmd is missing: apt-get install $pkg"
    say "installing $pkg"
    { apt-get install -y -qq "$pkg" || { apt-get update -qq && apt-get install -y -qq "$pkg"; }; } \
        >"$TMP/apt.log" 2>&1 || die "apt-get install $pkg failed: $(tail -n 5 "$TMP/apt.log")"
done
deploy/local/up.sh >/dev/null
grep -q '^kafka=started' build/local/up.state && SERVERS_STARTED=1
URL=$(sed -n 's/^redis.url *= *//p' build/local/jrp.conf)
BOOT=$(sed -n 's/^kafka.bootstrap.servers *= *//p' build/local/jrp.conf)
RHOST=$(sed -E 's#redis://(:[^@]*@)?([^:/]+):([0-9]+).*#\2#' <<<"$URL")
RPORT=$(sed -E 's#redis://(:[^@]*@)?([^:/]+):([0-9]+).*#\3#' <<<"$URL")

# A private namespace and a free port.
P=bench-gw-$(date +%s)-$$
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
CONF=$TMP/jrp.conf
cat >"$CONF" <<EOF
kafka.bootstrap.servers = $BOOT
redis.url = $URL
topic.prefix = $P.
redis.prefix = $P:
topic.partitions = 3
engine.instance = $P
engine.group = $P
gateway.listen = 127.0.0.1:$PORT
engine.listen = 127.0.0.1:0
log.level = warn
${BENCH_GW_CONF:-}
EOF

# --- rules, a token, one subject with measures --------------------------------------------------
"$CTL" rules load deploy/rules -c "$CONF" >/dev/null
TOKEN=$("$CTL" token create --department transport -c "$CONF" 2>/dev/null | sed -n 's/^token: *//p')
[[ $TOKEN == jrp_* ]] || die "jrpctl token create gave no token"
# start_gateway <conf>: a gateway on it (GW_PID), once it answers /readyz.
start_gateway() {
    local i
    "$GW" -c "$1" >>"$TMP/gateway.log" 2>&1 &
    PIDS+=($!) GW_PID=$!
    for ((i = 0; i < 300; i++)); do
        curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && return
        alive "$GW_PID" || die "jrp-gateway ended: $(tail -n 5 "$TMP/gateway.log")"
        sleep 0.1
    done
}
start_gateway "$CONF"
"$ENGINE" -c "$CONF" >"$TMP/engine.log" 2>&1 &
PIDS+=($!) ENGINE_PID=$!
NOW=$(($(date +%s) * 1000))
EVENT='{"event_id":"bench-1","kind":"listed","subject":{"type":"enterprise","id":"'$ENT'"},
 "source_department":"transport","occurred_at_ms":'$NOW',"list_code":"black.overload"}'
code=$(curl -s -o "$TMP/post.out" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' --data "$EVENT" "http://127.0.0.1:$PORT/v1/events")
[[ $code == 202 ]] || die "POST /v1/events: $code $(cat "$TMP/post.out")"
CHECK=http://127.0.0.1:$PORT/v1/subjects/enterprise/$ENT/measures
for ((i = 0; i < 600; i++)); do
    n=$(curl -s -H "Authorization: Bearer $TOKEN" "$CHECK" | grep -o '"measure_code"' | wc -l || true)
    ((n == 2)) && break
    alive "$ENGINE_PID" || die "jrp-engine ended: $(tail -n 5 "$TMP/engine.log")"
    sleep 0.1
done
((n == 2)) || die "the subject's state never reached Redis"
stop_pid "$ENGINE_PID" 30 # the gateway only reads what the engine wrote
KEY="$P:{enterprise:$ENT}:state"
[[ $(redis-cli -u "$URL" hexists "$KEY" st) == 1 ]] || die "no state at $KEY"
say "namespace $P: token, rules v1, $KEY ($(redis-cli -u "$URL" hstrlen "$KEY" st) bytes)"

# --- redis-benchmark: the same read, same concurrency ------------------------------------------
say "redis-benchmark: HGET $KEY st, $CONNS connections"
redis-benchmark -h "$RHOST" -p "$RPORT" -c "$CONNS" --threads "$THREADS" -n 1000000 --csv \
    HGET "$KEY" st >"$TMP/rb.csv" 2>/dev/null
# "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms",...
read -r RB_RPS RB_P50 RB_P99 < <(tail -n 1 "$TMP/rb.csv" | tr -d '"' |
    awk -F, '{printf "%.0f %.3f %.3f\n", $2, $5, $7}')

# --- wrk: the credit check ------------------------------------------------------------------------
cat >"$TMP/check.lua" <<EOF
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer $TOKEN"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.1f %.3f %.3f %d %d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests,
    e.connect + e.read + e.write + e.timeout + e.status))
end
EOF
# CPU seconds (user + system) of a live pid, to show where the time goes.
cpu_s() {
    local f
    [[ -n ${1:-} ]] && read -r -a f < <(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    awk -v t=$((f[11] + f[12])) -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz}'
}
BROKER=$(our_pid "$KAFKA_PID" "$KAFKA_PATTERN" || true) # KAFKA_PID, REDIS_PID: pid files
REDIS=$(our_pid "$REDIS_PID" "$REDIS_PATTERN" || true)
LOOP=$GW_PID/task/$GW_PID # the gateway's main thread: its libuv loop
declare -A CPU0
for who in GW_PID LOOP BROKER REDIS; do CPU0[$who]=$(cpu_s "${!who}"); done
# run_wrk <out file>: the credit check under load; prints "rps p50 p99 requests errors".
run_wrk() {
    wrk -t"$THREADS" -c"$CONNS" -d"${SECONDS_RUN}s" -s "$TMP/check.lua" "$CHECK" >"$1" 2>&1 ||
        die "wrk failed: $(tail -n 5 "$1")"
    grep -q '^RESULT ' "$1" || die "no result from wrk: $(cat "$1")"
    sed -n 's/^RESULT //p' "$1"
}
say "wrk: GET the credit check, $CONNS connections, $THREADS threads, ${SECONDS_RUN} s"
read -r GW_RPS GW_P50 GW_P99 GW_N GW_ERR < <(run_wrk "$TMP/wrk.out")
[[ -n ${GW_RPS:-} ]] || die "no result from wrk"
declare -A CPU
for who in GW_PID LOOP BROKER REDIS; do
    CPU[$who]=$(awk -v a="$(cpu_s "${!who}")" -v b="${CPU0[$who]}" 'BEGIN {printf "%.1f", a - b}')
done
RECORDED=$(curl -s "http://127.0.0.1:$PORT/metrics" | sed -n 's/^jrp_gateway_checks_recorded_total //p')
alive "$GW_PID" || die "jrp-gateway ended during the run"

# --- the same with gateway.check_record = queued (an extra row; not the verdict) ------------------
Q_RPS='' UNRECORDED=''
if [[ ${BENCH_QUEUED:-1} != 0 ]]; then
    stop_pid "$GW_PID" 30
    { cat "$CONF"; echo "gateway.check_record = queued"; } >"$TMP/queued.conf"
    start_gateway "$TMP/queued.conf"
    say "wrk: the same with gateway.check_record = queued"
    read -r Q_RPS Q_P50 Q_P99 Q_N Q_ERR < <(run_wrk "$TMP/wrkq.out")
    [[ -n ${Q_RPS:-} ]] || die "no result from wrk"
    sleep 1 # the last delivery reports
    UNRECORDED=$(curl -s "http://127.0.0.1:$PORT/metrics" |
        sed -n 's/^jrp_gateway_checks_unrecorded_total //p')
fi

# --- the table ------------------------------------------------------------------------------------
RATIO=$(awk -v a="$GW_RPS" -v b="$RB_RPS" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {ok = (op == ">=" ? v >= t : v <= t); print (ok ? "met" : "NOT met")}'; }
echo
printf '%-44s %12s %10s %10s\n' "" "requests/s" "p50 ms" "p99 ms"
printf '%-44s %12.0f %10.3f %10.3f\n' "jrp-gateway credit check (wrk, $CONNS conns)" "$GW_RPS" "$GW_P50" "$GW_P99"
printf '%-44s %12.0f %10.3f %10.3f\n' "redis-benchmark HGET state (64 conns)" "$RB_RPS" "$RB_P50" "$RB_P99"
[[ -n $Q_RPS ]] &&
    printf '%-44s %12.0f %10.3f %10.3f\n' "  extra: check_record = queued (not acked)" "$Q_RPS" "$Q_P50" "$Q_P99"
echo
echo "ratio gateway/redis-benchmark: $RATIO (target >= 0.5: $(verdict "$RATIO" '>=' 0.5))"
echo "gateway p99: $GW_P99 ms (target <= 5 ms: $(verdict "$GW_P99" '<=' 5))"
echo "requests: $GW_N, errors and non-2xx: $GW_ERR, checks recorded on $P.checks: ${RECORDED:-?}"
[[ -n $Q_RPS ]] && echo "queued: ratio $(awk -v a="$Q_RPS" -v b="$RB_RPS" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')," \
    "requests: $Q_N, errors and non-2xx: $Q_ERR, answered but not recorded: ${UNRECORDED:-?}"
echo "CPU seconds during the ${SECONDS_RUN} s of wrk: gateway ${CPU[GW_PID]} (of which its loop" \
    "thread ${CPU[LOOP]}), Kafka broker ${CPU[BROKER]}, Redis ${CPU[REDIS]};" \
    "$(nproc) CPUs shared with wrk"
