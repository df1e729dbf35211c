#!/usr/bin/env bash
# Recovery: does a backlog held behind an open circuit drain at full speed
# once the endpoint answers again?
#
#   scripts/bench/recovery.sh HERALD_BINARY recover|healthy [MESSAGES]
#
# A fresh `herald serve` on 127.0.0.1:${PORT:-18074}, one app, one endpoint
# at http://127.0.0.1:18090/hook, about MESSAGES (10,000) messages posted by
# wrk (wrk-post.lua, 64 connections, stopping after MESSAGES answers; the
# count used is what the server ingested).
#   recover: nothing listens on 18090 while the messages are posted; after
#            /metrics shows herald_circuits_open 1 (and HOLD seconds more,
#            default 0) nginx is started on 18090, and the script times until
#            the first success (circuits probe at doubling intervals, 1 s,
#            2 s, ... up to 60 s: the wait for the next probe), until every
#            delivery never tried is delivered (herald_attempts_total{outcome=
#            "success"} = accepted - failed attempts so far), and until all
#            are (the few that failed before the circuit opened wait for
#            their scheduled retry, 5 s after the failure).
#   healthy: nginx answers from the start: the same messages sent to a
#            healthy endpoint, from the first POST to the last success.
source "$(dirname "$0")/common.sh"

BIN=${1:?usage: recovery.sh HERALD_BINARY recover|healthy [MESSAGES]}
MODE=${2:?usage: recovery.sh HERALD_BINARY recover|healthy [MESSAGES]}
MSGS=${3:-10000}
HOLD=${HOLD:-0}
PORT=${PORT:-18074}
ADDR=127.0.0.1:$PORT
WORK=${WORK:-/var/tmp/herald-recovery}
SUCCESS='herald_attempts_total{outcome="success"}'

if (exec 3<>/dev/tcp/127.0.0.1/18090) 2>/dev/null; then
    echo "something already listens on 127.0.0.1:18090" >&2
    exit 1
fi
trap 'stop_wrk; stop_server; stop_nginx' EXIT
[[ $MODE == healthy ]] && start_nginx "$WORK/nginx"
start_server "$BIN" "$WORK/data"
APP=$(create_app "recovery-$(date +%s%N)")
create_endpoint "$APP" "http://127.0.0.1:18090/hook" >/dev/null

cpu0=$(cpu_seconds "$SERVER_PID")
t_post=$(now)
start_wrk_posting "$APP" "$MSGS" 64

if [[ $MODE == healthy ]]; then
    read -r t_all accepted < <(wait_all_delivered "$MSGS")
    cpu1=$(cpu_seconds "$SERVER_PID")
    stop_wrk
    win=$(elapsed "$t_all" "$t_post")
    echo "binary $BIN, healthy: $accepted messages accepted"
    awk -v n="$accepted" -v w="$win" -v cpu="$(awk -v a="$cpu1" -v b="$cpu0" 'BEGIN{print a-b}')" 'BEGIN {
        printf "all %d delivered %.2f s after the first POST: %.0f deliveries/s; server CPU %.2f s\n", n, w, n / w, cpu
        printf "JSON {\"mode\":\"healthy\",\"delivered\":%d,\"seconds\":%.3f,\"delivered_per_sec\":%.1f,\"server_cpu_s\":%.2f}\n", n, w, n / w, cpu
    }'
    exit 0
fi

accepted=$(wait_ingested "$MSGS")
t_posted=$(now)
stop_wrk
echo "binary $BIN, $MODE: $accepted accepted in $(elapsed "$t_posted" "$t_post") s"

t_open=$(wait_metric_ge herald_circuits_open 1 0.1 600)
sleep "$HOLD"
held=$(metric herald_deliveries_resident)
before=$(metric "$SUCCESS")
failed=$(metric 'herald_attempts_total{outcome="failure"}')
echo "circuit open $(elapsed "$t_open" "$t_post") s after the first POST; resident deliveries $held, failed attempts $failed, successes $before"
t_up=$(now)
start_nginx "$WORK/nginx"
# Milestones: the first success; every delivery never tried before
# (accepted less those that failed: those wait for their scheduled retry,
# 5 s after their failure, whatever the circuit does); all of them.
untried=$((accepted - failed))
t_first= t_untried=
while :; do
    v=$(metric "$SUCCESS")
    if [[ -z $t_first ]] && ((v > before)); then t_first=$(now); fi
    if [[ -z $t_untried ]] && ((v >= untried)); then t_untried=$(now); fi
    ((v >= accepted)) && break
    sleep 0.05
done
t_all=$(now)
cpu1=$(cpu_seconds "$SERVER_PID")
awk -v n="$accepted" -v u="$untried" -v up="$t_up" -v first="$t_first" -v mid="$t_untried" -v all="$t_all" \
    -v cpu="$(awk -v a="$cpu1" -v b="$cpu0" 'BEGIN{print a-b}')" 'BEGIN {
    p = first - up; d = mid - up; r = mid - first; a = all - up
    printf "receiver up -> first success %.2f s (the wait for the next probe)\n", p
    printf "receiver up -> the %d never tried delivered %.2f s: %.0f deliveries/s\n", u, d, u / d
    printf "first success -> the %d never tried delivered %.2f s: %.0f deliveries/s\n", u, r, u / r
    printf "receiver up -> all %d delivered %.2f s (the %d that had failed wait for their retry)\n", n, a, n - u
    printf "JSON {\"mode\":\"recover\",\"delivered\":%d,\"untried\":%d,\"probe_wait_s\":%.3f,\"drain_s\":%.3f,\"drain_per_sec\":%.1f,\"after_probe_s\":%.3f,\"after_probe_per_sec\":%.1f,\"all_s\":%.3f,\"server_cpu_s\":%.2f}\n", n, u, p, d, u / d, r, u / r, a, cpu
}'
