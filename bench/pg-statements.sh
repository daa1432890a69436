#!/usr/bin/env bash
# What PostgreSQL spends on each statement of one reminders run: a throwaway cluster
# (bench/pg.sh) with pg_stat_statements, one run to warm up, the statistics reset, then one
# measured run, and the statements by total time (ms over the run, calls, rows, shared buffers
# hit per call).
# Usage: bench/pg-statements.sh LABEL=BINARY [LABEL=BINARY...]  (bench binaries, as for
#   bench/ab-reminders.sh); each binary gets a fresh cluster. Needs PostgreSQL's binaries.
# Each run is bounded by `timeout 900`; run it with nothing else building.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || {
    echo "usage: bench/pg-statements.sh LABEL=BIN [LABEL=BIN...]" >&2
    exit 2
}
. bench/pg.sh
PG_OPTS="-c shared_preload_libraries=pg_stat_statements"
for side in "$@"; do
    label="${side%%=*}" bin="${side#*=}"
    start_pg
    trap stop_pg EXIT
    url="$PG_BASE/postgres"
    run() {
        TICKLER_BENCH_POSTGRES_URL="$url" timeout 900 "$bin" --bench --backend postgres \
            --settings 32:32:2000 --no-plans 2>/dev/null |
            awk '/^postgres +plain/ { if (seen[$0]++) print }' | sed "s/^/$label /"
    }
    run
    "$pg_bin/psql" -qAt "$url" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" \
        -c "SELECT pg_stat_statements_reset()" >/dev/null
    # The benchmark drops and creates its database before each run, seeding included: only
    # the statements of messages are listed below.
    run
    "$pg_bin/psql" -qAt -F ' | ' "$url" -c "
        SELECT round(total_exec_time::numeric, 1) AS ms, calls, rows,
               round(shared_blks_hit::numeric / greatest(calls, 1)) AS hit_per_call,
               left(regexp_replace(query, '\s+', ' ', 'g'), 110)
          FROM pg_stat_statements
         WHERE query ILIKE '%notification_log%' OR query ILIKE 'SELECT i.id::text%'
         ORDER BY total_exec_time DESC LIMIT 6" | sed "s/^/$label /"
    stop_pg
    trap - EXIT
done
