#!/usr/bin/env bash
# Runs every scheduler benchmark and prints one line per figure (README "Performance"), then
# the `invoice_reminders` benchmark (benches/reminders.rs) on SQLite and PostgreSQL, with its
# table and query plans.
# PostgreSQL: TICKLER_BENCH_POSTGRES_URL, or a throwaway cluster started here with initdb/pg_ctl.
# Usage: bench/run.sh [idle seconds, default 60]
#        bench/run.sh scheduler [idle seconds]                     (the scheduler lines alone)
#        bench/run.sh reminders [OPTIONS of benches/reminders.rs]   (that benchmark alone)
#        bench/run.sh queue [OPTIONS of benches/queue.rs]           (the task queue: burn-down
#            and steady load with `tickler run` daemons, PostgreSQL x1, x2 and SQLite)
#        bench/run.sh drill [--kills N] [--seed S]                 (the fault drill: a daemon
#            killed at N random moments, on SQLite then PostgreSQL; prints what was lost)
#        bench/run.sh console [OPTIONS of benches/console.rs]      (the operator console's
#            pages with 10,000 jobs and 1,000,000 ledger rows, SQLite then PostgreSQL: one
#            line per page, p50/p99/max against 100 ms, and the plans of their statements)
set -euo pipefail
cd "$(dirname "$0")/.."
only=
only_args=()
benches=(scheduler reminders)
if [ "${1:-}" = reminders ] || [ "${1:-}" = queue ] || [ "${1:-}" = drill ] ||
    [ "${1:-}" = console ]; then
    only="$1"
    shift
    only_args=("$@")
    benches=("$only")
fi
sched_only=
if [ "${1:-}" = scheduler ]; then
    sched_only=1
    benches=(scheduler)
    shift
fi
seconds="${1:-60}"
for b in "${benches[@]}"; do
    cargo bench --bench "$b" --no-run >/dev/null 2>&1 || cargo bench --bench "$b" --no-run
done
run() { cargo bench --quiet --bench scheduler -- "$@" 2>/dev/null | grep -E '^(lateness|idle|wake) '; }

. bench/pg.sh
bench_pg_url

if [ "$only" = drill ]; then
    # Each run bounds itself (3 minutes for the last daemon); the whole drill at 20 minutes.
    timeout 1200 cargo bench --quiet --bench drill -- "${only_args[@]}"
    timeout 1200 cargo bench --quiet --bench drill -- "${only_args[@]}" --database "$pg_url"
    exit 0
fi
if [ "$only" = console ]; then
    # Seeding takes a minute or two per backend, the pages under one; bounded at 30 minutes.
    TICKLER_BENCH_POSTGRES_URL="$pg_url" timeout 1800 \
        cargo bench --quiet --bench console -- "${only_args[@]}"
    exit 0
fi
if [ -n "$only" ]; then
    TICKLER_BENCH_POSTGRES_URL="$pg_url" cargo bench --quiet --bench "$only" -- "${only_args[@]}"
    exit 0
fi

for n in 1000 10000; do
    run lateness --jobs "$n"
    run lateness --jobs "$n" --database "$pg_url"
done
for n in 10 1000 10000; do
    run idle --jobs "$n" --seconds "$seconds"
    run idle --jobs "$n" --seconds "$seconds" --database "$pg_url"
done
run wake --inserts 50 --moves 10
run wake --inserts 50 --moves 10 --database "$pg_url"
[ -n "$sched_only" ] || TICKLER_BENCH_POSTGRES_URL="$pg_url" cargo bench --quiet --bench reminders
