#!/usr/bin/env bash
# Batching: how many events a second a batching endpoint receives.
#
#   scripts/bench/batch.sh HERALD_BINARY [MESSAGES] [MAX_EVENTS]
#
# Ingest runs at about 10-15k messages/s on this machine, below what a
# batching endpoint takes, so the events come from a backlog: a fresh
# `herald serve` on 127.0.0.1:${PORT:-18075}, one app, one endpoint at
# http://127.0.0.1:18090/hook with {"batch":{"maxEvents":MAX_EVENTS (100),
# "maxWaitMs":50}}; about MESSAGES (200,000) messages posted by wrk
# (wrk-post.lua, 64 connections) while nothing listens on 18090. The server
# is then stopped (SIGTERM: it hands its claims back), nginx
# (scripts/bench/nginx.conf, answering 200 at once) is started on 18090,
# and the server is started again on the same data: the script times from
# the restart until herald_attempts_total{outcome="success"} (one per
# message, a batch's messages each get one) reaches the count ingested,
# polling /metrics every 50 ms. nginx's access log counts the requests.
source "$(dirname "$0")/common.sh"

BIN=${1:?usage: batch.sh HERALD_BINARY [MESSAGES] [MAX_EVENTS]}
MSGS=${2:-200000}
MAX=${3:-100}
PORT=${PORT:-18075}
ADDR=127.0.0.1:$PORT
WORK=${WORK:-/var/tmp/herald-batch}
SUCCESS='herald_attempts_total{outcome="success"}'

if (exec 3<>/dev/tcp/127.0.0.1/18090) 2>/dev/null; then
    echo "something already listens on 127.0.0.1:18090" >&2
    exit 1
fi
trap 'stop_wrk; stop_server; stop_nginx' EXIT
start_server "$BIN" "$WORK/data"
APP=$(create_app "batch-$(date +%s%N)")
api_post "/app/$APP/endpoint/" \
    "{\"url\":\"http://127.0.0.1:18090/hook\",\"batch\":{\"maxEvents\":$MAX,\"maxWaitMs\":50}}" >/dev/null
t_post=$(now)
start_wrk_posting "$APP" "$MSGS" 64
accepted=$(wait_ingested "$MSGS")
stop_wrk
echo "binary $BIN: $accepted accepted in $(elapsed "$(now)" "$t_post") s (receiver down)"
stop_server

# The same data, the receiver up, access log on to count requests.
# (start_nginx copies $BENCH_DIR/nginx.conf: point it at a copy that logs.)
sed -e 's/access_log off;/access_log access.log;/' "$BENCH_DIR/nginx.conf" >"$WORK/nginx.conf"
BENCH_DIR=$WORK start_nginx "$WORK/nginx"
requests0=$(wc -l <"$WORK/nginx/access.log")
t_start=$(now)
"$BIN" serve --data-dir "$WORK/data" --listen "$ADDR" --allow-private-targets \
    --admin-token "$TOKEN" --log warn 2>>"$WORK/data.log" &
SERVER_PID=$!
until curl -sf "http://$ADDR/api/v1/health" >/dev/null 2>&1; do sleep 0.02; done
cpu0=$(cpu_seconds "$SERVER_PID")
t_first=
while :; do
    v=$(metric "$SUCCESS")
    [[ $v == none ]] && v=0
    if [[ -z $t_first ]] && ((v > 0)); then t_first=$(now); fi
    ((v >= accepted)) && break
    sleep 0.05
done
t_all=$(now)
cpu1=$(cpu_seconds "$SERVER_PID")
# CPU seconds by thread name over the drain (THREADS=1).
if [[ ${THREADS:-0} == 1 ]]; then
    for t in /proc/"$SERVER_PID"/task/*; do
        awk -v hz="$CLK_TCK" '{ n = $0; sub(/^[^(]*\(/, "", n); sub(/\).*$/, "", n); sub(/^.*\) /, ""); print n "\t" ($12 + $13) / hz }' "$t/stat"
    done | awk -F'\t' '{ s[$1] += $2 } END { for (n in s) printf "%s=%.2f ", n, s[n]; print "" }'
fi
requests=$(($(wc -l <"$WORK/nginx/access.log") - requests0))
awk -v n="$accepted" -v reqs="$requests" -v s="$t_start" -v f="$t_first" -v a="$t_all" \
    -v cpu="$(awk -v x="$cpu1" -v y="$cpu0" 'BEGIN{print x-y}')" 'BEGIN {
    d = a - s; r = a - f
    printf "restart -> all %d events delivered %.2f s: %.0f events/s; first success -> all %.2f s: %.0f events/s\n", n, d, n / d, r, n / r
    printf "%d requests (%.1f events each, %.0f requests/s); server CPU %.2f s (%.1f us per event)\n", reqs, n / reqs, reqs / r, cpu, cpu * 1e6 / n
    printf "JSON {\"events\":%d,\"requests\":%d,\"restart_to_all_s\":%.3f,\"events_per_sec\":%.1f,\"first_to_all_s\":%.3f,\"events_per_sec_after_first\":%.1f,\"server_cpu_s\":%.2f}\n", n, reqs, d, n / d, r, n / r, cpu
}'
