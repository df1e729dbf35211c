#!/usr/bin/env bash
# End to end with public tools: wrk posts messages to `herald serve`, which
# delivers each to one endpoint, an nginx answering 200.
#
#   scripts/bench/wrk-e2e.sh HERALD_BINARY [SECONDS]
#   scripts/bench/pg.sh wrk-e2e.sh HERALD_BINARY [SECONDS]   (on PostgreSQL)
#
# On SQLite by default; through pg.sh the server stores into the fresh
# PostgreSQL database pg.sh makes (it exports DATABASE_URL, which
# start_server passes on) and pg.sh prints PostgreSQL's CPU after the run.
#
# Starts nginx (scripts/bench/nginx.conf, 127.0.0.1:18090) and a fresh
# `herald serve` on 127.0.0.1:${PORT:-18071}, creates an app and one endpoint
# through the API, runs `wrk -t1 -c64 -d${SECONDS}s -s wrk-post.lua`, then
# waits until /metrics shows every ingested message delivered
# (herald_attempts_total{outcome="success"} = herald_messages_ingested_total).
# Prints accepted/s (wrk's 2xx per second), delivered/s (from the first POST
# to the last success), the server's CPU over that window and its peak RSS,
# as a table row and as one JSON line.
source "$(dirname "$0")/common.sh"

BIN=${1:?usage: wrk-e2e.sh HERALD_BINARY [SECONDS]}
SECS=${2:-30}
PORT=${PORT:-18071}
ADDR=127.0.0.1:$PORT
WORK=${WORK:-/var/tmp/herald-wrk-e2e}
CONNS=${CONNS:-64}

trap 'stop_server; stop_nginx' EXIT
start_nginx "$WORK/nginx"
start_server "$BIN" "$WORK/data"
APP=$(create_app "wrk-$(date +%s%N)")
create_endpoint "$APP" "http://127.0.0.1:18090/hook" >/dev/null

cpu0=$(cpu_seconds "$SERVER_PID")
t0=$(now)
out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$BENCH_DIR/wrk-post.lua" "http://$ADDR" -- "$APP" "$TOKEN")
t_wrk=$(now)
# Requests wrk abandoned at the end still finish on the server: wait until
# the ingested count stops moving and every one of them is delivered.
read -r t_done ingested < <(wait_all_delivered 1)
cpu1=$(cpu_seconds "$SERVER_PID")
hwm=$(peak_rss_mb "$SERVER_PID")
failed=$(metric 'herald_attempts_total{outcome="failure"}')
success=$(metric 'herald_attempts_total{outcome="success"}')

line=$(grep '^WRK ' <<<"$out")
requests=$(sed -E 's/.* requests=([0-9]+).*/\1/' <<<"$line")
non2xx=$(sed -E 's/.* non2xx=([0-9]+).*/\1/' <<<"$line")
errors=$(sed -E 's/.* errors=([0-9]+).*/\1/' <<<"$line")
wsecs=$(sed -E 's/.* seconds=([0-9.]+).*/\1/' <<<"$line")
p50=$(sed -E 's/.* p50_ms=([0-9.]+).*/\1/' <<<"$line")
p99=$(sed -E 's/.* p99_ms=([0-9.]+).*/\1/' <<<"$line")
window=$(elapsed "$t_done" "$t0")
awk -v bin="$BIN" -v req="$requests" -v bad="$non2xx" -v err="$errors" -v ws="$wsecs" \
    -v ing="$ingested" -v ok="$success" -v fail="$failed" -v win="$window" \
    -v after="$(elapsed "$t_done" "$t_wrk")" -v cpu="$(awk -v a="$cpu1" -v b="$cpu0" 'BEGIN{print a-b}')" \
    -v hwm="$hwm" -v p50="$p50" -v p99="$p99" 'BEGIN {
    acc = (req - bad) / ws
    printf "binary %s\n", bin
    printf "wrk: %d requests in %.2f s, %d non-2xx, %d socket errors: %.0f accepted/s (p50 %s ms, p99 %s ms)\n", req, ws, bad, err, acc, p50, p99
    printf "server: %d ingested, %d delivered (%d failed attempts), last success %.2f s after wrk ended\n", ing, ok, fail, after
    printf "delivered/s over the window (first POST to last success, %.2f s): %.0f\n", win, ok / win
    printf "server CPU %.2f s (%.1f us per message), peak RSS %s MB\n", cpu, cpu / ing * 1e6, hwm
    printf "JSON {\"accepted_per_sec\":%.1f,\"requests\":%d,\"non2xx\":%d,\"errors\":%d,\"ingested\":%d,\"delivered\":%d,\"failed_attempts\":%d,\"window_s\":%.3f,\"delivered_per_sec\":%.1f,\"server_cpu_s\":%.2f,\"cpu_us_per_msg\":%.1f,\"peak_rss_mb\":%s,\"wrk_p50_ms\":%s,\"wrk_p99_ms\":%s}\n", acc, req, bad, err, ing, ok, fail, win, ok / win, cpu, cpu / ing * 1e6, hwm, p50, p99
}'
