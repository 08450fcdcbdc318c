#!/usr/bin/env bash
# Engine benchmark of issue #3 (run by bench/run.sh): events/s of jrp-engine on N listing events and
# the sample rules beside a passthrough (same records and transaction batching, no logic) and a naive
# Python peer (bench/naive_peer.py); p50/p99 latency at half of each peak; the engine's peak RSS.
# Prints the table, writes it to <build>/bench/engine.md. Usage: bench/engine.sh [BUILD_DIR]
# (BENCH_N, BENCH_NAIVE_N, BENCH_REPEAT change the sizes; small N understate the passthrough.
# To iterate on latency alone: BENCH_RATE=<engine events/s> [BENCH_PASS_RATE=<events/s>] skips the
# peak runs and measures at those rates; BENCH_SYSTEMS="engine pass" leaves the naive peer out;
# BENCH_LOGS=<dir> keeps each engine's stderr there; BENCH_CONF=<file> uses the Kafka and Redis it
# names instead of starting the local servers).
set -euo pipefail
cd "$(dirname "$0")/.."
PROG=bench
# shellcheck source=deploy/local/common.sh
source deploy/local/common.sh # say, die, alive, stop_pid

VDIR=${1:-build}
BE=$VDIR/bench/bench_engine ENGINE=$VDIR/bin/jrp-engine CTL=$VDIR/bin/jrpctl
N=${BENCH_N:-200000}
NAIVE_N=${BENCH_NAIVE_N:-$N}
REPEAT=${BENCH_REPEAT:-3}
VENV=build/bench/venv
MD=$VDIR/bench/engine.md
RUN_ID=$(date +%s)-$$
SYSTEMS=${BENCH_SYSTEMS:-engine pass naive}
FIXED_RATE=${BENCH_RATE:-}
LOGS=${BENCH_LOGS:-}
BASE_CONF=${BENCH_CONF:-build/local/jrp.conf}
[[ -n $LOGS ]] && mkdir -p "$LOGS"
has() { [[ " $SYSTEMS " == *" $1 "* ]]; }
for f in "$BE" "$ENGINE" "$CTL"; do [[ -x $f ]] || die "$f is missing: make -j2 all benches"; done

START=$SECONDS TMP=$(mktemp -d) BG=() SERVERS_STARTED='' CONF='' SEQ=0
cleanup() {
    local pid
    for pid in "${BG[@]}"; do
        alive "$pid" && stop_pid "$pid" 10
    done
    [[ -n $CONF ]] && drop_prefix
    rm -rf "$TMP"
    if [[ -n $SERVERS_STARTED ]]; then deploy/local/down.sh || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# kv <key> <line>: the value of key=value in a bench_engine output line.
kv() {
    local w
    for w in $2; do [[ $w == "$1="* ]] && echo "${w#*=}" && return; done
    die "no $1= in: $2"
}
note() { say "[$((SECONDS - START)) s] $*"; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {ok = (op == ">=" ? v >= t : v <= t); print (ok ? "met" : "NOT met")}'; }

# bg <out file> <command...>: start a command of ours in the background; its pid in PID.
bg() {
    local out=$1
    shift
    "$@" >"$out" 2>&1 &
    PID=$!
    BG+=("$PID")
}
# reap <pid>: the exit status of an ended background process (kept, so it can be asked again).
declare -A STATUS
reap() {
    if [[ -z ${STATUS[$1]:-} ]]; then
        STATUS[$1]=0
        wait "$1" || STATUS[$1]=$?
    fi
    return "${STATUS[$1]}"
}
# bg_wait <pid> <timeout s> <out file> [watched pid [live]]: wait for it to end; fail with its
# output unless it exited 0, or if the watched process fails (or ends at all, with "live") first.
bg_wait() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        alive "$1" || break
        if [[ -n ${4:-} ]] && ! alive "$4" && { ! reap "$4" || [[ -n ${5:-} ]]; }; then
            stop_pid "$1" 5
            tail -n 20 "$TMP"/*.log >&2 || true
            die "process $4 ended during the run"
        fi
        sleep 0.1
    done
    alive "$1" && stop_pid "$1" 5 && die "timed out after $2 s: $(tail -n 5 "$3")"
    reap "$1" || die "failed: $(tail -n 5 "$3")"
}
# stop <pid>: SIGTERM (SIGKILL after 30 s) and reap.
stop() {
    stop_pid "$1" 30
    reap "$1" || true
}

# new_conf <label>: a fresh prefix P and its config CONF (the previous prefix is dropped first).
new_conf() {
    [[ -n $CONF ]] && drop_prefix
    SEQ=$((SEQ + 1))
    P=jrpb-$RUN_ID-$SEQ-$1
    CONF=$TMP/$P.conf
    {
        cat "$BASE_CONF"
        printf '%s = %s\n' topic.prefix "$P." redis.prefix "$P:" engine.instance "$P" \
            engine.group "$P" log.level warn kafka.log_level 3 engine.listen 127.0.0.1:0
    } >"$CONF"
}
# drop_prefix: delete the topics and Redis keys of the current prefix (they are large).
drop_prefix() {
    local url
    timeout 90 "$BE" drop "$CONF" >/dev/null || say "could not delete the topics of $P"
    url=$(sed -n 's/^redis.url *= *//p' "$BASE_CONF")
    timeout 120 redis-cli -u "$url" --scan --pattern "$P:*" |
        timeout 120 xargs -r -n 1000 redis-cli -u "$url" unlink >/dev/null ||
        say "could not delete the Redis keys of $P"
    CONF=''
}

# The engine's peak RSS (MB, VmHWM) and CPU seconds (utime + stime) of a live pid.
rss_mb() { awk '/^VmHWM:/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
cpu_s() {
    local f
    read -r -a f < <(sed 's/.*) //' "/proc/$1/stat")
    awk -v t=$((f[11] + f[12])) -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t / hz}'
}

# --- setup -------------------------------------------------------------------------------------
if [[ -z ${BENCH_CONF:-} ]]; then
    deploy/local/up.sh
    grep -q '^kafka=started' build/local/up.state && SERVERS_STARTED=1
fi
# apt <package>: install a Debian package (root only), updating the lists if needed.
apt() {
    ((EUID == 0)) || die "$1 is missing: apt-get install $1"
    say "installing $1"
    { apt-get install -y -qq "$1" || { apt-get update -qq && apt-get install -y -qq "$1"; }; } \
        >"$TMP/apt.log" 2>&1 || die "apt-get install $1 failed: $(tail -n 5 "$TMP/apt.log")"
}
command -v protoc >/dev/null || apt protobuf-compiler
mkdir -p "$TMP/proto" "$(dirname "$MD")"
protoc --python_out="$TMP/proto" -Iproto proto/jrp/v1/*.proto
if ! cmp -s bench/requirements.txt "$VENV/requirements.txt"; then
    say "installing the naive peer's packages into $VENV"
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV" >"$TMP/venv.log" 2>&1; then
        rm -rf "$VENV"
        apt python3-venv # Debian's python3 has no venv module without it
        python3 -m venv "$VENV"
    fi
    timeout 600 "$VENV/bin/pip" install -q -r bench/requirements.txt
    cp bench/requirements.txt "$VENV/requirements.txt"
fi
NAIVE=("$VENV/bin/python" bench/naive_peer.py --proto "$TMP/proto" --rules deploy/rules)

# --- peak runs: N events preloaded, then the system runs flat out -------------------------------
engine_peak() {
    new_conf engine
    timeout 60 "$CTL" rules load deploy/rules -c "$CONF" >/dev/null
    timeout 120 "$BE" produce "$CONF" "$N" >/dev/null
    bg "$TMP/engine.log" "$ENGINE" -c "$CONF"
    local epid=$PID line
    bg "$TMP/measure.out" "$BE" measure "$CONF" decisions "$N" decision
    bg_wait "$PID" 900 "$TMP/measure.out" "$epid" live
    local rate rss cpu records
    rate=$(kv events_per_s "$(cat "$TMP/measure.out")")
    rss=$(rss_mb "$epid")
    cpu=$(cpu_s "$epid")
    stop "$epid"
    keep_log engine-peak
    line=$(timeout 300 "$BE" count "$CONF" actions. decisions state alerts)
    records=$(kv records "$line")
    E_RATE+=("$rate") E_RSS+=("$rss") E_CPU+=("$cpu")
    E_K+=("$(awk -v r="$records" -v n="$N" 'BEGIN {printf "%.0f", r / n}')")
    note "engine: $rate events/s, $rss MB peak RSS, $cpu CPU s, $records records"
    # The auditors' dry-run replay of what the engine just did (issue #6), and beside it the
    # floor: reading the same two topics with no matching.
    local rline t0 t1
    rline=$(timeout 900 "$CTL" replay --from 0 --to 99999999999999 -c "$CONF" 2>/dev/null |
        grep '^replayed ')
    R_RATE+=("$(sed -n 's/.*(\([0-9]*\) events\/s).*/\1/p' <<<"$rline")")
    R_DIFF+=("$(sed -n 's/.*, \([0-9]*\) differing.*/\1/p' <<<"$rline")")
    t0=$(date +%s%N)
    timeout 300 "$BE" count "$CONF" events decisions >/dev/null
    t1=$(date +%s%N)
    RD_RATE+=("$(awk -v n="$N" -v ns=$((t1 - t0)) 'BEGIN {printf "%.0f", n / (ns / 1e9)}')")
    note "replay: ${R_RATE[-1]} events/s, ${R_DIFF[-1]} differing; reading events and decisions alone: ${RD_RATE[-1]} events/s"
}
pass_peak() {
    new_conf pass
    timeout 120 "$BE" produce "$CONF" "$N" >/dev/null
    timeout 900 "$BE" passthrough "$CONF" "$N" "$K" >/dev/null
    local line rate
    line=$(timeout 900 "$BE" measure "$CONF" passthrough $((N * K)) event)
    rate=$(kv events_per_s "$line")
    P_RATE+=("$rate")
    note "passthrough: $rate events/s"
}
naive_peak() {
    new_conf naive
    timeout 120 "$BE" produce "$CONF" "$NAIVE_N" >/dev/null
    local line actions rate
    line=$("${NAIVE[@]}" "$CONF" "$NAIVE_N" --timeout 900)
    actions=$(kv actions "$line")
    NAIVE_K=$(awk -v a="$actions" -v n="$NAIVE_N" 'BEGIN {printf "%.0f", a / n}')
    line=$(timeout 900 "$BE" measure "$CONF" naive "$actions" json)
    rate=$(kv events_per_s "$line")
    N_RATE+=("$rate")
    note "naive peer: $rate events/s"
}

# --- latency at half the peak rate: the system starts idle, then RATE events/s for 10 s ----------
# warm: one event (id b-900000) before the system starts (it creates the topic); warm_wait <topic>
# <field> <system pid>: its output is there, so the system is up before the paced events start.
warm() {
    timeout 60 "$BE" produce "$CONF" 1 0 900000 >/dev/null
}
warm_wait() {
    bg "$TMP/warm.out" "$BE" measure "$CONF" "$1" 1 "$2"
    bg_wait "$PID" 120 "$TMP/warm.out" "$3"
}
# latency <system pid> <rate> <n> <topic> <outputs> <field> [live]: n events paced at rate/s,
# measured alongside; the result line in LAT.
latency() {
    # BENCH_DUMP_DIR=<dir>: each event's latencies into <dir>/<topic>.txt (see bench_engine.c)
    BENCH_DUMP=${BENCH_DUMP_DIR:+$BENCH_DUMP_DIR/$4.txt} bg "$TMP/measure.out" "$BE" measure \
        "$CONF" "$4" "$5" "$6"
    local mpid=$PID
    timeout 300 "$BE" produce "$CONF" "$3" "$2" >/dev/null
    bg_wait "$mpid" 300 "$TMP/measure.out" "$1" "${7:-}"
    LAT=$(cat "$TMP/measure.out")
}
lat_n() { awk -v r="$1" 'BEGIN {n = r * 10; print (n > 200000 ? 200000 : n)}'; }

engine_latency() {
    local n
    n=$(lat_n "$1")
    new_conf engine-lat
    timeout 60 "$CTL" rules load deploy/rules -c "$CONF" >/dev/null
    warm
    bg "$TMP/engine.log" "$ENGINE" -c "$CONF"
    local epid=$PID
    warm_wait decisions decision "$epid"
    latency "$epid" "$1" "$n" decisions $((n + 1)) decision live
    E_LAT=$LAT E_LAT_N=$n
    note "engine at $1/s: $LAT"
    stop "$epid"
    keep_log engine-lat
}
pass_latency() {
    local n
    n=$(lat_n "$1")
    new_conf pass-lat
    warm
    bg "$TMP/pass.log" "$BE" passthrough "$CONF" $((n + 1)) "$K"
    local ppid=$PID
    warm_wait passthrough event "$ppid"
    latency "$ppid" "$1" "$n" passthrough $(((n + 1) * K)) event
    P_LAT=$LAT P_LAT_N=$n
    note "passthrough at $1/s: $LAT"
    bg_wait "$ppid" 60 "$TMP/pass.log"
}
naive_latency() {
    local n
    n=$(lat_n "$1")
    new_conf naive-lat
    warm
    bg "$TMP/naive.log" "${NAIVE[@]}" "$CONF" $((n + 1)) --timeout 600
    local npid=$PID
    warm_wait naive json "$npid"
    latency "$npid" "$1" "$n" naive $(((n + 1) * NAIVE_K)) json
    N_LAT=$LAT N_LAT_N=$n
    note "naive peer at $1/s: $LAT"
    bg_wait "$npid" 60 "$TMP/naive.log"
}

# keep_log <name>: the engine's stderr into BENCH_LOGS, if set.
keep_log() {
    [[ -z $LOGS ]] || cp "$TMP/engine.log" "$LOGS/$1-$SEQ.log"
}

# --- run -----------------------------------------------------------------------------------------
E_RATE=() E_RSS=() E_CPU=() E_K=() P_RATE=() N_RATE=() K=0 NAIVE_K=0 R_RATE=() R_DIFF=() RD_RATE=()
if [[ -n $FIXED_RATE ]]; then
    # Latency only, at the given rates (twice them stand in for the peaks in the table).
    K=7 NAIVE_K=5
    E_RATE=($((FIXED_RATE * 2))) P_RATE=($((${BENCH_PASS_RATE:-$FIXED_RATE} * 2))) N_RATE=(0)
    E_RSS=(0) E_CPU=(0) R_RATE=(0) R_DIFF=(0) RD_RATE=(0)
else
    for ((r = 1; r <= REPEAT; r++)); do
        note "peak run $r of $REPEAT (engine $N events, passthrough $N, naive peer $NAIVE_N)"
        engine_peak
        K=$(median "${E_K[@]}")
        if has pass; then pass_peak; else P_RATE+=(0); fi
        if has naive; then naive_peak; else N_RATE+=(0); fi
    done
fi
E=$(median "${E_RATE[@]}") PT=$(median "${P_RATE[@]}") NV=$(median "${N_RATE[@]}")
RSS=$(median "${E_RSS[@]}") CPU=$(median "${E_CPU[@]}")
RP=$(median "${R_RATE[@]}") RD=$(median "${RD_RATE[@]}")
note "latency at half the peak rate: engine $((E / 2))/s, passthrough $((PT / 2))/s, naive $((NV / 2))/s"
E_LAT="p50_ms=- p99_ms=- seen_p50_ms=- seen_p99_ms=- steady_seen_p50_ms=- steady_seen_p99_ms=-"
P_LAT=$E_LAT N_LAT=$E_LAT
E_LAT_N=0 P_LAT_N=0 N_LAT_N=0
engine_latency $((E / 2))
if has pass && ((PT > 0)); then pass_latency $((PT / 2)); fi
if has naive && ((NV > 0)); then naive_latency $((NV / 2)); fi
drop_prefix

# --- table ---------------------------------------------------------------------------------------
lat_cells() {
    echo "$(kv p50_ms "$1") / $(kv p99_ms "$1") | $(kv seen_p50_ms "$1") / $(kv seen_p99_ms "$1")" \
        "| $(kv steady_seen_p50_ms "$1") / $(kv steady_seen_p99_ms "$1")"
}
EP99=$(kv seen_p99_ms "$E_LAT")
R_PT=$(ratio "$E" "$PT") R_NV=$(ratio "$E" "$NV")
{
    echo "Engine benchmark ($(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)," \
        "$(nproc) cores shared with Kafka and Redis; median of $REPEAT peak runs; $((SECONDS - START)) s)"
    echo
    echo "| system | events | events/s (median) | runs | half-peak rate | p50 / p99 ms, record time | p50 / p99 ms, seen | seen, from the 3rd second |"
    echo "|---|---|---|---|---|---|---|---|"
    echo "| engine (sample rules, $K records/event) | $N | $E | ${E_RATE[*]} | $((E / 2))/s × $E_LAT_N | $(lat_cells "$E_LAT") |"
    echo "| passthrough ($K records/event, same txns) | $N | $PT | ${P_RATE[*]} | $((PT / 2))/s × $P_LAT_N | $(lat_cells "$P_LAT") |"
    echo "| naive peer (Python, $NAIVE_K records/event) | $NAIVE_N | $NV | ${N_RATE[*]} | $((NV / 2))/s × $N_LAT_N | $(lat_cells "$N_LAT") |"
    echo
    echo "| target | value | |"
    echo "|---|---|---|"
    echo "| engine / passthrough ≥ 0.8 | $R_PT | $(verdict "$R_PT" ">=" 0.8) |"
    echo "| engine / naive peer ≥ 20 | $R_NV | $(verdict "$R_NV" ">=" 20) |"
    echo "| engine p99 at half peak ≤ 50 ms | $EP99 ms seen ($(kv p99_ms "$E_LAT") ms record time; $(kv steady_seen_p99_ms "$E_LAT") ms seen from the 3rd second) | $(verdict "$EP99" "<=" 50) |"
    echo "| engine peak RSS ≤ 64 MB | $RSS MB | $(verdict "$RSS" "<=" 64) |"
    echo "| replay dry run ≥ 100,000 events/s | $RP (runs ${R_RATE[*]}; differing ${R_DIFF[*]}); reading the topics alone $RD, ratio $(ratio "$RP" "$RD") | $(verdict "$RP" ">=" 100000) |"
    echo
    echo "Engine CPU (user+sys) per peak run: ${E_CPU[*]} s (median $CPU s). Latency \"record time\" is the"
    echo "output record's timestamp minus the event's; \"seen\" is when a read_committed reader running"
    echo "alongside got the output (after the transaction commit). Per event the last of its outputs counts;"
    echo "a latency run starts with one warm-up event (counted) once the system answered it. The last"
    echo "column leaves out the events of the run's first two seconds (the start-up: partitions new to"
    echo "the transactions, cold caches); the verdict is on the whole run."
} | tee "$MD"
say "table written to $MD"
