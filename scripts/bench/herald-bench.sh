#!/usr/bin/env bash
# One `herald bench` run against a fresh server.
#
#   scripts/bench/herald-bench.sh SERVER_BINARY BENCH_BINARY [BENCH ARGS...]
#
# Starts SERVER_BINARY serve on a fresh data directory on
# 127.0.0.1:${PORT:-18072}, runs `BENCH_BINARY bench --url ... --token ...
# --server-pid PID --json BENCH ARGS`, prints its JSON line (prefixed with
# the server binary, for collecting runs), and stops the server. Use the
# same BENCH_BINARY for every server compared: the load generator and sink
# stay the same, only the server changes. THREADS=1 also prints the server's
# CPU seconds by thread name before and after.
source "$(dirname "$0")/common.sh"

SERVER=${1:?usage: herald-bench.sh SERVER_BINARY BENCH_BINARY [BENCH ARGS...]}
BENCH=${2:?usage: herald-bench.sh SERVER_BINARY BENCH_BINARY [BENCH ARGS...]}
shift 2
PORT=${PORT:-18072}
ADDR=127.0.0.1:$PORT
WORK=${WORK:-/var/tmp/herald-bench-run}

trap 'stop_server' EXIT
start_server "$SERVER" "$WORK/data"
# CPU seconds by thread name (threads of one name summed), for THREADS=1.
threads_cpu() {
    for t in /proc/"$SERVER_PID"/task/*; do
        awk -v hz="$CLK_TCK" '{ n = $0; sub(/^[^(]*\(/, "", n); sub(/\).*$/, "", n); sub(/^.*\) /, ""); print n "\t" ($12 + $13) / hz }' "$t/stat"
    done | awk -F'\t' '{ s[$1] += $2 } END { for (n in s) printf "%s=%.2f ", n, s[n] }'
}
[[ ${THREADS:-0} == 1 ]] && before=$(threads_cpu)
json=$("$BENCH" bench --url "http://$ADDR" --token "$TOKEN" --server-pid "$SERVER_PID" --json "$@" 2>"$WORK/bench.log")
echo "RUN server=$SERVER args=$* $json"
[[ ${THREADS:-0} == 1 ]] && echo "THREADS before: $before" && echo "THREADS after: $(threads_cpu)"
exit 0
