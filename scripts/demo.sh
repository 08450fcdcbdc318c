#!/usr/bin/env bash
# make demo: the main job on the embedded default. Starts librdkafka's in-process mock Kafka
# cluster (jrp-demo, no JVM) and a private redis-server, loads deploy/rules, runs the real
# jrp-engine, sends a short story through jrpctl, and prints what each department received.
# Everything it started is stopped on exit. (The mock cluster is a stand-in for a demo only.)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/bin
work=build/demo
rm -rf "$work"
mkdir -p "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() {
    local p
    for ((p = $1; p < $1 + 200; p++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
    echo "demo: no free port near $1" >&2
    exit 1
}

echo "== starting a private Redis and the embedded mock Kafka cluster"
rport=$(free_port 16500)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
    >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done

prefix=demo.
departments=$(sed -n 's/.*"department": *"\([a-z_0-9]*\)".*/\1/p' deploy/rules/*.json | sort -u)
topics=()
for t in events state decisions alerts dlq feedback checks rules tokens; do topics+=("$prefix$t"); done
for d in $departments; do topics+=("${prefix}actions.$d"); done
"$bin/jrp-demo" 3 "${topics[@]}" >"$work/mock.out" 2>"$work/mock.log" &
pids+=($!)
for _ in $(seq 50); do grep -q '^bootstrap=' "$work/mock.out" 2>/dev/null && break; sleep 0.1; done
bootstrap=$(sed -n 's/^bootstrap=//p' "$work/mock.out")
[ -n "$bootstrap" ] || { echo "demo: the mock cluster did not start" >&2; cat "$work/mock.log" >&2; exit 1; }

conf=$work/jrp.conf
cat >"$conf" <<CONF
kafka.bootstrap.servers = $bootstrap
kafka.log_level = 3
redis.url = redis://127.0.0.1:$rport/0
topic.prefix = $prefix
redis.prefix = demo:
topic.partitions = 3
engine.instance = demo-1
engine.group = demo
engine.lapse_check_ms = 500
engine.rules_check_ms = 500
engine.listen = 127.0.0.1:0
log.level = warn
CONF

echo "== loading the sample memoranda (deploy/rules)"
"$bin/jrpctl" rules load deploy/rules -c "$conf"

echo "== starting jrp-engine"
"$bin/jrp-engine" -c "$conf" >"$work/engine.log" 2>&1 &
pids+=($!)

now=$(date +%s%3N)
lapse=$((now + 6000))
cat >"$work/story.jsonl" <<STORY
{"event_id":"demo-1","kind":"listed","subject":{"type":"enterprise","id":"91350100M000100Y43","name":"津门物流有限公司"},"source_department":"transport","occurred_at_ms":$now,"list_code":"black.logistics"}
{"event_id":"demo-2","kind":"listed","subject":{"type":"enterprise","id":"91512081MA62K0260E","name":"滨海交通建设集团"},"source_department":"transport","occurred_at_ms":$now,"list_code":"red.construction","valid_until_ms":$((now + 2 * 365 * 86400000))}
{"event_id":"demo-3","kind":"listed","subject":{"type":"vehicle","id":"津A12345"},"source_department":"transport","occurred_at_ms":$now,"list_code":"black.overload","valid_until_ms":$lapse}
{"event_id":"demo-4","kind":"delisted","subject":{"type":"enterprise","id":"91350100M000100Y43"},"source_department":"transport","occurred_at_ms":$((now + 1)),"list_code":"black.logistics","delist_reason":"repaired"}
STORY
echo "== the story: a logistics company black-listed then repaired, a construction company"
echo "   red-listed, an overloaded truck whose listing lapses 6 s from now"
"$bin/jrpctl" events send "$work/story.jsonl" -c "$conf"

echo "== waiting for the engine (the truck's listing lapses by itself)"
for _ in $(seq 300); do
    n=$("$bin/jrpctl" tail decisions --from-beginning --exit --value-only -c "$conf" 2>/dev/null | wc -l)
    [ "$n" -ge 5 ] && break
    if ! kill -0 "${pids[2]}" 2>/dev/null; then
        echo "demo: jrp-engine stopped:" >&2
        tail -n 20 "$work/engine.log" >&2
        exit 1
    fi
    sleep 0.2
done
[ "$n" -ge 5 ] || { echo "demo: only $n decisions after 60 s" >&2; tail -n 20 "$work/engine.log" >&2; exit 1; }

for d in $departments; do
    echo
    echo "-- credit.actions.$d (as topic ${prefix}actions.$d)"
    "$bin/jrpctl" tail "actions.$d" --from-beginning --exit --value-only -c "$conf" |
        python3 deploy/demo/table.py actions
done
echo
echo "-- decisions (the audit trail)"
"$bin/jrpctl" tail decisions --from-beginning --exit --value-only -c "$conf" |
    python3 deploy/demo/table.py decisions
echo
echo "== done: everything the demo started is being stopped"
