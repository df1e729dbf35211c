#!/usr/bin/env bash
# Where PostgreSQL's time goes during one bench run: runs pg.sh SCRIPT ARGS,
# then prints pg_stat_statements' top statements, the bench database's
# table and index counters, and the CPU of PostgreSQL's processes by kind.
#
#   PG_ADMIN_URL=postgres://postgres@127.0.0.1:5544/postgres \
#     scripts/bench/pg-profile.sh herald-bench.sh BIN BIN --messages 50000 --concurrency 64
#
# The server behind PG_ADMIN_URL must load pg_stat_statements
# (shared_preload_libraries), so use a private one, not a shared server
# (see BENCHMARKS.md, "PostgreSQL, one node", for how ours was started).
# Its statement statistics are reset before the run: they are the
# server's, whatever else uses it meanwhile.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
admin=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db=${PGBENCH_DB:-herald_bench}
dburl=${admin%/*}/$db
CLK_TCK=$(getconf CLK_TCK)
postmaster=$(head -1 "$(psql -Atq "$admin" -c 'SHOW data_directory')/postmaster.pid")

# CPU seconds of the postmaster's children now alive, by kind (a backend's
# title is "postgres: USER DB ADDR STATE"; the rest name themselves).
by_kind() {
    local pid
    for pid in $(pgrep -P "$postmaster"); do
        [[ -r /proc/$pid/stat ]] || continue
        kind=$(tr '\0' ' ' <"/proc/$pid/cmdline" | awk '{ if ($2 == "postgres" || $3 == "'"$db"'") print "backends"; else { $1 = ""; sub(/^ /, ""); print } }')
        awk -v k="$kind" -v hz="$CLK_TCK" '{ sub(/^.*\) /, ""); printf "%s\t%.2f\n", k, ($12 + $13) / hz }' "/proc/$pid/stat" 2>/dev/null || true
    done | awk -F'\t' '{ s[$1] += $2 } END { for (k in s) printf "%s\t%.2f\n", k, s[k] }' | sort
}

psql -q "$admin" -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' -c 'SELECT pg_stat_statements_reset()' \
    -c "SELECT pg_stat_reset_shared('wal')" -c "SELECT pg_stat_reset_shared('bgwriter')" >/dev/null
before=$(by_kind)
PG_ADMIN_URL=$admin PGBENCH_DB=$db "$here/pg.sh" "$@"
after=$(by_kind)

echo "== CPU seconds by process during the run (background processes alive throughout; backends that exited are in pg.sh's PG_CPU only)"
join -t $'\t' -a 2 -e 0 -o 0,1.2,2.2 <(echo "$before") <(echo "$after") |
    awk -F'\t' '{ printf "  %-40s %8.2f\n", $1, $3 - $2 }'

echo "== pg_stat_statements: top statements by total time"
psql -q "$admin" -P pager=off -c "
    SELECT calls, round(total_exec_time::numeric, 0) AS total_ms,
           round(mean_exec_time::numeric, 3) AS mean_ms, rows,
           round(rows::numeric / NULLIF(calls, 0), 1) AS rows_per_call,
           shared_blks_hit + shared_blks_read AS blocks, wal_records, pg_size_pretty(wal_bytes) AS wal,
           left(regexp_replace(query, '\s+', ' ', 'g'), 90) AS query
    FROM pg_stat_statements
    ORDER BY total_exec_time DESC LIMIT 15"

echo "== tables"
psql -q "$dburl" -P pager=off -c "
    SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, n_live_tup, n_dead_tup,
           autovacuum_count, autoanalyze_count,
           pg_size_pretty(pg_table_size(relid)) AS heap, pg_size_pretty(pg_indexes_size(relid)) AS indexes
    FROM pg_stat_user_tables WHERE n_tup_ins + n_tup_upd > 0 ORDER BY relname"

echo "== indexes"
psql -q "$dburl" -P pager=off -c "
    SELECT relname, indexrelname, idx_scan, idx_tup_read, idx_tup_fetch,
           pg_size_pretty(pg_relation_size(indexrelid)) AS size
    FROM pg_stat_user_indexes
    WHERE relname IN (SELECT relname FROM pg_stat_user_tables WHERE n_tup_ins + n_tup_upd > 0)
    ORDER BY relname, indexrelname"

echo "== WAL and checkpoints"
psql -q "$admin" -P pager=off -c "SELECT wal_records, wal_fpi, pg_size_pretty(wal_bytes) AS wal, wal_write, wal_sync, round(wal_sync_time::numeric, 0) AS sync_ms FROM pg_stat_wal" \
    -c "SELECT checkpoints_timed, checkpoints_req, buffers_checkpoint, buffers_backend FROM pg_stat_bgwriter"
