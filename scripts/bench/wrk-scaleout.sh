#!/usr/bin/env bash
# Scale-out measured with public tools only: NODES `herald serve` processes
# on one PostgreSQL database, each capped at QUOTA cores by a CPU cgroup of
# its own, one wrk per node posting to it (CONNS connections each), and one
# nginx answering 200 as the endpoint. Run it through pg.sh:
#
#   QUOTA=0.2 scripts/bench/pg.sh wrk-scaleout.sh HERALD_BINARY NODES [SECONDS]
#
# Delivered/s is every node's successful attempts together, from the first
# POST until all that the nodes ingested was delivered. Prints each node's
# CPU and throttled periods, as scaleout.sh does. Needs root (cgroups).
source "$(dirname "$0")/common.sh"

BIN=${1:?usage: wrk-scaleout.sh HERALD_BINARY NODES [SECONDS]}
NODES=${2:?usage: wrk-scaleout.sh HERALD_BINARY NODES [SECONDS]}
SECS=${3:-15}
QUOTA=${QUOTA:-0.2}
CONNS=${CONNS:-64}
BASE_PORT=${PORT:-18072}
WORK=${WORK:-/var/tmp/herald-wrk-scaleout}
KEY=${HERALD_ENCRYPTION_KEY:-$(head -c 32 /dev/urandom | base64)}

PIDS=()
ADDRS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for i in $(seq 1 "$NODES"); do cg_remove "$i"; done
    stop_nginx
}
trap cleanup EXIT
start_nginx "$WORK/nginx"
for i in $(seq 1 "$NODES"); do
    ADDR=127.0.0.1:$((BASE_PORT + i - 1))
    SERVER_ARGS="--encryption-key $KEY" start_server "$BIN" "$WORK/node$i"
    cg_cap "$i" "$SERVER_PID" "$QUOTA"
    PIDS+=("$SERVER_PID")
    ADDRS+=("$ADDR")
done
ADDR=${ADDRS[0]}
APP=$(create_app "wrk-$(date +%s%N)")
create_endpoint "$APP" "http://127.0.0.1:18090/hook" >/dev/null

# The sum of metric $1 over every node.
total() {
    local a sum=0 v
    for a in "${ADDRS[@]}"; do
        v=$(ADDR=$a metric "$1")
        [[ $v == none ]] && v=0
        sum=$((sum + ${v%.*}))
    done
    echo "$sum"
}

declare -A cpu0
for pid in "${PIDS[@]}"; do cpu0[$pid]=$(cpu_seconds "$pid"); done
t0=$(now)
WRKS=()
for i in $(seq 1 "$NODES"); do
    wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$BENCH_DIR/wrk-post.lua" "http://${ADDRS[$((i - 1))]}" -- "$APP" "$TOKEN" \
        >"$WORK/wrk$i.out" &
    WRKS+=($!)
done
for w in "${WRKS[@]}"; do wait "$w"; done
# Every node's ingest and successes together, until they agree and stay.
while :; do
    ing=$(total herald_messages_ingested_total)
    ok=$(total 'herald_attempts_total{outcome="success"}')
    if ((ok >= ing)); then
        t_done=$(now)
        sleep 0.5
        [[ $(total herald_messages_ingested_total) == "$ing" ]] && break
    fi
    sleep 0.05
done
window=$(elapsed "$t_done" "$t0")
failed=$(total 'herald_attempts_total{outcome="failure"}')
non2xx=0
for i in $(seq 1 "$NODES"); do
    n=$(sed -nE 's/^WRK .* non2xx=([0-9]+).*/\1/p' "$WORK/wrk$i.out")
    non2xx=$((non2xx + ${n:-0}))
done
echo "RUN nodes=$NODES quota=$QUOTA conns_per_node=$CONNS seconds=$SECS ingested=$ing delivered=$ok failed_attempts=$failed non2xx=$non2xx window_s=$window delivered_per_sec=$(awk -v o="$ok" -v w="$window" 'BEGIN { printf "%.0f", o / w }')"
for i in $(seq 1 "$NODES"); do
    pid=${PIDS[$((i - 1))]}
    echo "NODE $i pid=$pid cpu_s=$(awk -v a="$(cpu_seconds "$pid")" -v b="${cpu0[$pid]}" 'BEGIN { printf "%.2f", a - b }') throttled=$(cg_throttled "$i")"
done
