# Helpers shared by the scripts in scripts/bench/ (sourced, not run).
# Everything listens on loopback only.

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOKEN=${TOKEN:-bench-token}
CLK_TCK=$(getconf CLK_TCK)

now() { date +%s.%N; }

# $1 - $2 in seconds, 3 decimals.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }

# CPU seconds (utime + stime) a process has used so far.
cpu_seconds() {
    # Fields after the command name "(...)": utime and stime are 14 and 15.
    awk -v hz="$CLK_TCK" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"
}

# Peak resident size (VmHWM) in MB.
peak_rss_mb() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
rss_mb() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# One sample from the server's /metrics, e.g.
#   metric herald_circuits_open
#   metric 'herald_attempts_total{outcome="success"}'
# Prints "none" when the server does not export it.
metric() {
    curl -sf "http://$ADDR/metrics" | awk -v m="$1" '$1 == m { v = $2 } END { print (v == "" ? "none" : v) }'
}

# Starts `herald serve` from binary $1 on a fresh data directory $2,
# listening on $ADDR; sets SERVER_PID and waits for the health check. With
# DATABASE_URL set, the server stores into that database (see pg.sh, which
# makes a fresh one) instead of SQLite in the data directory.
start_server() {
    local bin=$1 data=$2
    rm -rf "$data"
    mkdir -p "$data"
    "$bin" serve --data-dir "$data" --listen "$ADDR" --allow-private-targets \
        --admin-token "$TOKEN" --log warn ${DATABASE_URL:+--database-url "$DATABASE_URL"} \
        ${SERVER_ARGS:-} 2>"$data.log" &
    SERVER_PID=$!
    for _ in $(seq 1 200); do
        curl -sf "http://$ADDR/api/v1/health" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "server did not come up; see $data.log" >&2
    return 1
}

stop_server() {
    if [[ -n ${SERVER_PID:-} ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID"
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=
}

# Starts nginx from scripts/bench/nginx.conf under prefix $1 (its pid file,
# logs and temp files go there); sets NGINX_PID. The configuration listens on
# 127.0.0.1:18090; $2, when given, replaces that port.
start_nginx() {
    local prefix=$1 port=${2:-18090}
    rm -rf "$prefix"
    mkdir -p "$prefix"
    sed "s/127\.0\.0\.1:18090/127.0.0.1:$port/" "$BENCH_DIR/nginx.conf" >"$prefix/nginx.conf"
    nginx -p "$prefix" -c "$prefix/nginx.conf" &
    NGINX_PID=$!
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "nginx did not come up on $port; see $prefix/error.log" >&2
    return 1
}

stop_nginx() {
    if [[ -n ${NGINX_PID:-} ]] && kill -0 "$NGINX_PID" 2>/dev/null; then
        kill -QUIT "$NGINX_PID"
        wait "$NGINX_PID" 2>/dev/null || true
    fi
    NGINX_PID=
}

# POST /api/v1$1 with JSON body $2; prints the response body.
api_post() {
    curl -sf -X POST "http://$ADDR/api/v1$1" -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' -d "$2"
}

# Creates an application; prints its id.
create_app() {
    api_post /event-type/ '{"name":"bench.wrk","description":"scripts/bench"}' >/dev/null 2>&1 || true
    api_post /app/ "{\"name\":\"$1\",\"uid\":\"$1\"}" | sed -E 's/.*"id":"([^"]+)".*/\1/'
}

# Creates an endpoint of app $1 with url $2; prints its id.
create_endpoint() {
    api_post "/app/$1/endpoint/" "{\"url\":\"$2\",\"description\":\"scripts/bench\"}" |
        sed -E 's/.*"id":"([^"]+)".*/\1/'
}

# Posts $2 messages to app $1, $3 at a time (curl's parallel transfers);
# prints how many were answered 202.
post_messages() {
    local app=$1 n=$2 par=${3:-32}
    local body='{"eventType":"bench.wrk","payload":{"source":"scripts/bench","note":"a message of about two hundred bytes, as a small webhook would carry","padding":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}'
    curl -s --parallel --parallel-max "$par" -X POST \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        -d "$body" -o /dev/null -w 'HTTP:%{http_code}\n' \
        "http://$ADDR/api/v1/app/$app/msg/?n=[1-$n]" 2>/dev/null | grep -c '^HTTP:202$' || true
}

# Starts wrk in the background posting about $2 messages to app $1 over
# $3 connections (it stops after $2 answers; the few in flight then may be
# accepted too); sets WRK_PID. Stop it with stop_wrk once the server's
# ingested count is what you want.
start_wrk_posting() {
    MAX_REQUESTS=$2 wrk -t1 -c"${3:-64}" -d600s -s "$BENCH_DIR/wrk-post.lua" "http://$ADDR" -- "$1" "$TOKEN" >/dev/null &
    WRK_PID=$!
}

stop_wrk() {
    if [[ -n ${WRK_PID:-} ]] && kill -0 "$WRK_PID" 2>/dev/null; then
        kill "$WRK_PID"
        wait "$WRK_PID" 2>/dev/null || true
    fi
    WRK_PID=
}

# Waits until herald_messages_ingested_total is at least $1 and has not
# moved for half a second; prints it.
wait_ingested() {
    local last=-1 v
    while :; do
        v=$(metric herald_messages_ingested_total)
        if ((v >= $1 && v == last)); then
            echo "$v"
            return 0
        fi
        last=$v
        sleep 0.5
    done
}

# Waits until at least $1 messages were ingested and every one of them
# delivered (successes = ingested), confirmed by the ingested count not
# moving for half a second after; prints "TIME COUNT", TIME being when the
# successes first caught up (polled every 50 ms).
wait_all_delivered() {
    local ing ok t
    while :; do
        ing=$(metric herald_messages_ingested_total)
        ok=$(metric 'herald_attempts_total{outcome="success"}')
        if ((ing >= $1 && ok >= ing)); then
            t=$(now)
            sleep 0.5
            if [[ $(metric herald_messages_ingested_total) == "$ing" ]]; then
                echo "$t $ing"
                return 0
            fi
        fi
        sleep 0.05
    done
}

# Waits until metric $1 reaches at least $2 (polling every $3 s, default
# 0.1), or $4 seconds (default 1200) pass; prints the time it got there.
wait_metric_ge() {
    local name=$1 want=$2 every=${3:-0.1} limit=${4:-1200}
    local deadline v
    deadline=$(awk -v t="$(now)" -v l="$limit" 'BEGIN { printf "%.3f", t + l }')
    while :; do
        v=$(metric "$name")
        if [[ $v != none ]] && awk -v v="$v" -v w="$want" 'BEGIN { exit !(v >= w) }'; then
            now
            return 0
        fi
        if awk -v t="$(now)" -v d="$deadline" 'BEGIN { exit !(t > d) }'; then
            echo "timed out waiting for $name >= $want (at $v)" >&2
            return 1
        fi
        sleep "$every"
    done
}

# CPU cgroups for capped nodes (scaleout.sh, wrk-scaleout.sh): cgroup v1
# (/sys/fs/cgroup/cpu, cpu.cfs_quota_us) where present, else v2 (cpu.max).
# cg_cap N PID QUOTA puts PID in cgroup herald-nN capped at QUOTA cores;
# cg_throttled N prints how many of its periods were throttled; cg_remove N.
CG_PERIOD=100000
if [[ -d /sys/fs/cgroup/cpu && -w /sys/fs/cgroup/cpu ]]; then
    CG_ROOT=/sys/fs/cgroup/cpu
else
    CG_ROOT=/sys/fs/cgroup
fi
cg_cap() {
    local cg=$CG_ROOT/herald-n$1 quota_us
    quota_us=$(awk -v q="$3" -v p="$CG_PERIOD" 'BEGIN { printf "%d", q * p }')
    mkdir -p "$cg"
    if [[ $CG_ROOT == /sys/fs/cgroup/cpu ]]; then
        echo "$CG_PERIOD" >"$cg/cpu.cfs_period_us" && echo "$quota_us" >"$cg/cpu.cfs_quota_us"
    else
        echo +cpu >"$CG_ROOT/cgroup.subtree_control" 2>/dev/null || true
        echo "$quota_us $CG_PERIOD" >"$cg/cpu.max"
    fi
    echo "$2" >"$cg/cgroup.procs"
}
cg_throttled() {
    awk '$1 == "nr_throttled" { t = $2 } $1 == "nr_periods" { p = $2 } END { printf "%d of %d periods", t, p }' \
        "$CG_ROOT/herald-n$1/cpu.stat"
}
cg_remove() { rmdir "$CG_ROOT/herald-n$1" 2>/dev/null || true; }
