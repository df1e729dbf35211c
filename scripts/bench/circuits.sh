#!/usr/bin/env bash
# Isolation: what 1,000 unreachable endpoints cost an idle server.
#
#   scripts/bench/circuits.sh HERALD_BINARY [ENDPOINTS] [MESSAGES] [WINDOW_SECONDS]
#
# A fresh `herald serve` on 127.0.0.1:${PORT:-18073}; one app with ENDPOINTS
# (1,000) endpoints, each pointing at its own loopback port with nothing
# listening (20000, 20001, ...: below the ephemeral range, so refused);
# MESSAGES (10) messages, each fanned out to every endpoint (10,000
# deliveries, a backlog of 10 per endpoint). Waits until /metrics shows
# herald_circuits_open = ENDPOINTS (on a server without circuits: until every
# delivery has failed once), then reads the server's utime+stime over
# WINDOW_SECONDS (60) without touching it, and prints the CPU as % of one
# core, the failed attempts during the window, and herald_deliveries_resident
# at its start and end. WINDOWS=N measures N such windows one after another.
source "$(dirname "$0")/common.sh"

BIN=${1:?usage: circuits.sh HERALD_BINARY [ENDPOINTS] [MESSAGES] [WINDOW_SECONDS]}
N=${2:-1000}
MSGS=${3:-10}
WINDOW=${4:-60}
PORT=${PORT:-18073}
ADDR=127.0.0.1:$PORT
WORK=${WORK:-/var/tmp/herald-circuits}
BASE_PORT=${BASE_PORT:-20000}

for p in $(seq "$BASE_PORT" $((BASE_PORT + N - 1))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "port $p is listening; pick another BASE_PORT" >&2
        exit 1
    fi
done

trap 'stop_server' EXIT
start_server "$BIN" "$WORK/data"
APP=$(create_app "circuits-$(date +%s%N)")
# One curl, eight requests at a time; each entry carries its own options.
for i in $(seq 0 $((N - 1))); do
    ((i > 0)) && echo next
    cat <<CURL
silent
url = "http://$ADDR/api/v1/app/$APP/endpoint/"
header = "Authorization: Bearer $TOKEN"
header = "Content-Type: application/json"
data = "{\\"url\\":\\"http://127.0.0.1:$((BASE_PORT + i))/hook\\",\\"description\\":\\"refused $i\\"}"
output = "/dev/null"
write-out = "HTTP:%{http_code}\\n"
CURL
done >"$WORK/endpoints.curl"
curl -s --parallel --parallel-max 8 -K "$WORK/endpoints.curl" 2>/dev/null | grep -c '^HTTP:201$' >"$WORK/endpoints.created" || true
echo "endpoints created: $(cat "$WORK/endpoints.created") of $N"

t_post=$(now)
accepted=$(post_messages "$APP" "$MSGS" 1)
echo "messages accepted: $accepted of $MSGS ($((accepted * N)) deliveries)"

if [[ $(metric herald_circuits_open) != none ]]; then
    t_ready=$(wait_metric_ge herald_circuits_open "$N" 0.1 600)
    echo "herald_circuits_open reached $N $(elapsed "$t_ready" "$t_post") s after the first POST"
else
    t_ready=$(wait_metric_ge 'herald_attempts_total{outcome="failure"}' $((accepted * N)) 0.1 600)
    echo "no circuits on this server: every delivery had failed once $(elapsed "$t_ready" "$t_post") s after the first POST"
fi

# WINDOWS (default 1) consecutive windows, each reported on its own.
for w in $(seq 1 "${WINDOWS:-1}"); do
    res0=$(metric herald_deliveries_resident)
    fail0=$(metric 'herald_attempts_total{outcome="failure"}')
    cpu0=$(cpu_seconds "$SERVER_PID")
    t0=$(now)
    sleep "$WINDOW"
    cpu1=$(cpu_seconds "$SERVER_PID")
    t1=$(now)
    fail1=$(metric 'herald_attempts_total{outcome="failure"}')
    res1=$(metric herald_deliveries_resident)
    open1=$(metric herald_circuits_open)
    rss=$(rss_mb "$SERVER_PID")
    hwm=$(peak_rss_mb "$SERVER_PID")
    awk -v bin="$BIN" -v c0="$cpu0" -v c1="$cpu1" -v t0="$t0" -v t1="$t1" -v f0="$fail0" -v f1="$fail1" \
        -v r0="$res0" -v r1="$res1" -v open="$open1" -v rss="$rss" -v hwm="$hwm" -v n="$N" -v w="$w" \
        -v since="$(elapsed "$t0" "$t_ready")" 'BEGIN {
        len = t1 - t0; cpu = c1 - c0
        printf "binary %s, %d refusing endpoints, window %d (from %.1f s after the start point)\n", bin, n, w, since
        printf "window %.1f s: server CPU %.2f s = %.2f %% of one core; %d failed attempts in it (%.1f/s)\n", len, cpu, 100 * cpu / len, f1 - f0, (f1 - f0) / len
        printf "resident deliveries %s at the start, %s at the end; circuits open at the end %s; RSS %s MB (peak %s)\n", r0, r1, open, rss, hwm
        printf "JSON {\"window\":%d,\"from_s\":%.1f,\"window_s\":%.1f,\"cpu_s\":%.2f,\"cpu_pct_one_core\":%.2f,\"attempts_in_window\":%d,\"resident_start\":\"%s\",\"resident_end\":\"%s\",\"circuits_open_end\":\"%s\",\"rss_mb\":%s,\"peak_rss_mb\":%s}\n", w, since, len, cpu, 100 * cpu / len, f1 - f0, r0, r1, open, rss, hwm
    }'
done
