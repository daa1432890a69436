#!/usr/bin/env bash
# What the trigger `scheduled_tasks_notify_sooner` (migration 0006) costs PostgreSQL on a claim:
# 100,000 pending tasks claimed (pending -> executing) 128 at a time in one DO block, with the
# trigger and without it, ROUNDS rounds, on a throwaway cluster (bench/pg.sh) migrated by the
# release binary. The insert trigger (0003) is disabled during the inserts of each round. Prints
# the wall time a claimed task; the server does all the work, on one backend.
# Usage: bench/pg-trigger-cost.sh [ROUNDS, default 3]   (after `cargo build --release`)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
. bench/pg.sh
start_pg
trap stop_pg EXIT
psql_args=(-X -q -v ON_ERROR_STOP=1 "$PG_BASE/postgres")
sql() { psql "${psql_args[@]}" "$@"; }
config=$(mktemp)
printf '[daemon]\ndatabase_url = "%s/postgres"\n' "$PG_BASE" >"$config"
timeout 120 target/release/tickler migrate --config "$config" >/dev/null
rm -f "$config"
for round in $(seq 1 "$rounds"); do
    for mode in with without; do
        sql -c "TRUNCATE scheduled_tasks CASCADE"
        if [ "$mode" = without ]; then
            sql -c "DROP TRIGGER scheduled_tasks_notify_sooner ON scheduled_tasks"
        fi
        sql -c "ALTER TABLE scheduled_tasks DISABLE TRIGGER scheduled_tasks_notify"
        sql -c "INSERT INTO scheduled_tasks (id, task_type, task_data, scheduled_for, status)
                SELECT gen_random_uuid(), 'custom', '{}', now() - interval '1 minute', 'pending'
                FROM generate_series(1, 100000)"
        sql -c "ALTER TABLE scheduled_tasks ENABLE TRIGGER scheduled_tasks_notify"
        sql -c "VACUUM ANALYZE scheduled_tasks"
        t0=$(date +%s%N)
        timeout 300 psql "${psql_args[@]}" -c "DO \$\$ BEGIN
            FOR i IN 1..782 LOOP
                UPDATE scheduled_tasks SET status = 'executing' WHERE id IN (
                    SELECT id FROM scheduled_tasks WHERE status = 'pending'
                    ORDER BY scheduled_for LIMIT 128);
            END LOOP; END \$\$"
        t1=$(date +%s%N)
        left=$(sql -At -c "SELECT count(*) FROM scheduled_tasks WHERE status = 'pending'")
        echo "round $round, trigger $mode: $(((t1 - t0) / 100000)) ns a claimed task ($left left pending)"
        if [ "$mode" = without ]; then
            sql -f migrations/postgres/0006_queue_notify_sooner.sql
        fi
    done
done
echo "command: bench/pg-trigger-cost.sh $rounds"
