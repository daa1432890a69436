#!/usr/bin/env bash
# What PostgreSQL spends on each statement of one reminders run: a throwaway cluster with
# pg_stat_statements, one run to warm up, the statistics reset, then one measured run, and the
# statements by total time (ms over the run, calls, rows, shared buffers hit per call).
# Usage: bench/pg-statements.sh LABEL=BINARY [LABEL=BINARY...]  (bench binaries, as for
#   bench/ab-reminders.sh); each binary gets a fresh cluster. Needs PostgreSQL's binaries.
# Each run is bounded by `timeout 900`; run it with nothing else building.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || {
    echo "usage: bench/pg-statements.sh LABEL=BIN [LABEL=BIN...]" >&2
    exit 2
}
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
as_pg=()
[ "$(id -u)" = 0 ] && as_pg=(runuser -u postgres --)
for side in "$@"; do
    label="${side%%=*}" bin="${side#*=}"
    pg_dir=$(mktemp -d /tmp/tickler-pgss.XXXXXX)
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$pg_dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "${as_pg[@]}" "$pg_bin/initdb" -A trust -U postgres -D "$pg_dir/data" >/dev/null
    "${as_pg[@]}" "$pg_bin/pg_ctl" start -w -D "$pg_dir/data" -l "$pg_dir/log" \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $pg_dir -c max_connections=200 -c shared_preload_libraries=pg_stat_statements" >/dev/null
    trap '"${as_pg[@]}" "$pg_bin/pg_ctl" stop -m fast -D "$pg_dir/data" >/dev/null; rm -rf "$pg_dir"' EXIT
    url="postgres://postgres@127.0.0.1:$port/postgres"
    run() {
        TICKLER_BENCH_POSTGRES_URL="$url" timeout 900 "$bin" --bench --backend postgres \
            --settings 32:32:2000 --no-plans 2>/dev/null |
            awk '/^postgres +plain/ { if (seen[$0]++) print }' | sed "s/^/$label /"
    }
    run
    "$pg_bin/psql" -qAt "$url" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" \
        -c "SELECT pg_stat_statements_reset()" >/dev/null
    # The benchmark drops and creates its database before each run: only the run's statements
    # are counted below (the seeding's are reset with the database, then named apart).
    run
    "$pg_bin/psql" -qAt -F ' | ' "$url" -c "
        SELECT round(total_exec_time::numeric, 1) AS ms, calls, rows,
               round(shared_blks_hit::numeric / greatest(calls, 1)) AS hit_per_call,
               left(regexp_replace(query, '\s+', ' ', 'g'), 110)
          FROM pg_stat_statements
         WHERE query ILIKE '%notification_log%' OR query ILIKE 'SELECT i.id::text%'
         ORDER BY total_exec_time DESC LIMIT 6" | sed "s/^/$label /"
    "${as_pg[@]}" "$pg_bin/pg_ctl" stop -m fast -D "$pg_dir/data" >/dev/null
    rm -rf "$pg_dir"
    trap - EXIT
done
