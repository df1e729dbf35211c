#!/usr/bin/env bash
# Runs another bench script with the server on a fresh PostgreSQL database.
#
#   scripts/bench/pg.sh SCRIPT [SCRIPT ARGS...]
#   e.g. scripts/bench/pg.sh herald-bench.sh target/release/herald target/release/herald --messages 50000
#
# Drops and creates the database ${PGBENCH_DB:-herald_bench} on
# ${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}, exports
# DATABASE_URL for start_server (common.sh), runs the script, and prints the
# CPU seconds every PostgreSQL server process used meanwhile (PG_CPU=…),
# so server CPU per message can be read for the database too. The script
# runs as root (it reads the postmaster's pid file and /proc).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
script=${1:?usage: pg.sh SCRIPT [ARGS...]}
shift
admin=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db=${PGBENCH_DB:-herald_bench}
psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
export DATABASE_URL=${admin%/*}/$db
CLK_TCK=$(getconf CLK_TCK)
# The server behind $admin only (another PostgreSQL on the machine, such as
# a shared one beside a private profiling server, is not counted): its
# postmaster from the data directory's postmaster.pid, and its children.
postmaster=$(head -1 "$(psql -Atq "$admin" -c 'SHOW data_directory')/postmaster.pid")
pg_cpu() {
    local total=0 pid
    for pid in "$postmaster" $(pgrep -P "$postmaster"); do
        [[ -r /proc/$pid/stat ]] || continue
        total=$(awk -v t="$total" -v hz="$CLK_TCK" '{ sub(/^.*\) /, ""); printf "%.2f", t + ($12 + $13) / hz }' "/proc/$pid/stat" 2>/dev/null || echo "$total")
    done
    echo "$total"
}
# Exited backends take their CPU with them: count what the server's
# processes used via the postmaster's children as they end (cutime) too.
pm_children() { awk -v hz="$CLK_TCK" '{ sub(/^.*\) /, ""); printf "%.2f", ($14 + $15) / hz }' "/proc/$postmaster/stat"; }
before=$(awk -v a="$(pg_cpu)" -v b="$(pm_children)" 'BEGIN { printf "%.2f", a + b }')
"$here/$script" "$@"
after=$(awk -v a="$(pg_cpu)" -v b="$(pm_children)" 'BEGIN { printf "%.2f", a + b }')
echo "PG_CPU=$(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.2f", a - b }') s (all PostgreSQL processes, database $db)"
