#!/usr/bin/env bash
# Runs every scheduler benchmark and prints one line per figure (README "Performance"), then
# the `invoice_reminders` benchmark (benches/reminders.rs) on SQLite and PostgreSQL, with its
# table and query plans.
# PostgreSQL: TICKLER_BENCH_POSTGRES_URL, or a throwaway cluster started here with initdb/pg_ctl.
# Usage: bench/run.sh [idle seconds, default 60]
#        bench/run.sh reminders [OPTIONS of benches/reminders.rs]   (that benchmark alone)
#        bench/run.sh queue [OPTIONS of benches/queue.rs]           (the task queue: burn-down
#            and steady load with `tickler run` daemons, PostgreSQL x1, x2 and SQLite)
set -euo pipefail
cd "$(dirname "$0")/.."
only=
only_args=()
benches=(scheduler reminders)
if [ "${1:-}" = reminders ] || [ "${1:-}" = queue ]; then
    only="$1"
    shift
    only_args=("$@")
    benches=("$only")
fi
seconds="${1:-60}"
for b in "${benches[@]}"; do
    cargo bench --bench "$b" --no-run >/dev/null 2>&1 || cargo bench --bench "$b" --no-run
done
run() { cargo bench --quiet --bench scheduler -- "$@" 2>/dev/null | grep -E '^(lateness|idle) '; }

pg_url="${TICKLER_BENCH_POSTGRES_URL:-}"
if [ -z "$pg_url" ]; then
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
    dir=$(mktemp -d /tmp/tickler-bench-pg.XXXXXX)
    as_pg=()
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; as_pg=(runuser -u postgres --); fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "${as_pg[@]}" "$bin/initdb" -A trust -U postgres -D "$dir/data" >/dev/null
    "${as_pg[@]}" "$bin/pg_ctl" start -w -D "$dir/data" -l "$dir/log" \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200" >/dev/null
    trap '"${as_pg[@]}" "$bin/pg_ctl" stop -m fast -D "$dir/data" >/dev/null; rm -rf "$dir"' EXIT
    pg_url="postgres://postgres@127.0.0.1:$port/postgres"
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
done
TICKLER_BENCH_POSTGRES_URL="$pg_url" cargo bench --quiet --bench reminders
