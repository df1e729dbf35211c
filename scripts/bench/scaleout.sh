#!/usr/bin/env bash
# Scale-out on one PostgreSQL database: NODES `herald serve` processes, each
# capped at QUOTA cores by a CPU cgroup of its own, with `herald bench`
# posting message n to node n mod NODES. Run it through pg.sh, which makes
# the fresh database and prints PostgreSQL's CPU over the run:
#
#   scripts/bench/pg.sh scaleout.sh HERALD_BINARY NODES [BENCH ARGS...]
#   e.g. QUOTA=0.4 scripts/bench/pg.sh scaleout.sh target/release/herald 2 --messages 30000 --concurrency 64
#
# Needs root: it makes cgroups herald-n1.. under /sys/fs/cgroup/cpu (cgroup
# v1, cpu.cfs_quota_us) or, where that is absent, under /sys/fs/cgroup
# (v2, cpu.max), and removes them at the end. The bench itself runs
# uncapped. Prints the bench's JSON line, then each node's CPU seconds and
# how often its quota throttled it (cpu.stat), so a reader can tell the
# nodes were held at their quota rather than by the database.
source "$(dirname "$0")/common.sh"

BIN=${1:?usage: scaleout.sh HERALD_BINARY NODES [BENCH ARGS...]}
NODES=${2:?usage: scaleout.sh HERALD_BINARY NODES [BENCH ARGS...]}
shift 2
QUOTA=${QUOTA:-0.4}
BASE_PORT=${PORT:-18072}
WORK=${WORK:-/var/tmp/herald-scaleout}
# One encryption key for every node: they share the database's secrets.
KEY=${HERALD_ENCRYPTION_KEY:-$(head -c 32 /dev/urandom | base64)}

PIDS=()
URLS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for i in $(seq 1 "$NODES"); do cg_remove "$i"; done
}
trap cleanup EXIT

for i in $(seq 1 "$NODES"); do
    ADDR=127.0.0.1:$((BASE_PORT + i - 1))
    SERVER_ARGS="--encryption-key $KEY ${SERVER_ARGS_EXTRA:-}" start_server "$BIN" "$WORK/node$i"
    cg_cap "$i" "$SERVER_PID" "$QUOTA"
    PIDS+=("$SERVER_PID")
    URLS+=(--url "http://$ADDR")
done

pid_args=()
for pid in "${PIDS[@]}"; do pid_args+=(--server-pid "$pid"); done
declare -A cpu0
for pid in "${PIDS[@]}"; do cpu0[$pid]=$(cpu_seconds "$pid"); done
json=$("$BIN" bench "${URLS[@]}" --token "$TOKEN" "${pid_args[@]}" --json "$@" 2>"$WORK/bench.log")
echo "RUN nodes=$NODES quota=$QUOTA server=$BIN args=$* $json"
for i in $(seq 1 "$NODES"); do
    pid=${PIDS[$((i - 1))]}
    throttled=$(cg_throttled "$i")
    echo "NODE $i pid=$pid cpu_s=$(awk -v a="$(cpu_seconds "$pid")" -v b="${cpu0[$pid]}" 'BEGIN { printf "%.2f", a - b }') throttled=$throttled"
done
