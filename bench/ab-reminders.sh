#!/usr/bin/env bash
# A/B of the reminders benchmark: two built bench binaries (`cargo bench --bench reminders
# --no-run` at each revision, copied aside), interleaved ROUNDS times on SQLite and on one
# throwaway PostgreSQL (bench/pg.sh); each printed line is prefixed with its binary's label.
# Usage: bench/ab-reminders.sh LABEL=BINARY LABEL=BINARY ROUNDS [benchmark arguments...]
#   e.g. bench/ab-reminders.sh base=/tmp/ab/base head=/tmp/ab/head 3 --settings 32:32:2000 --no-plans
# Each run is bounded by `timeout 900`; run it with nothing else building.
set -euo pipefail
cd "$(dirname "$0")/.."
a="${1:?usage: bench/ab-reminders.sh LABEL=BIN LABEL=BIN ROUNDS [ARGS...]}"
b="${2:?usage: bench/ab-reminders.sh LABEL=BIN LABEL=BIN ROUNDS [ARGS...]}"
rounds="${3:?usage: bench/ab-reminders.sh LABEL=BIN LABEL=BIN ROUNDS [ARGS...]}"
shift 3
. bench/pg.sh
start_pg
trap stop_pg EXIT
for _ in $(seq "$rounds"); do
    for side in "$a" "$b"; do
        label="${side%%=*}" bin="${side#*=}"
        # The benchmark prints its table twice (as it goes, then whole): keep the whole one;
        # and the lines of its phases (`--phases`), printed once.
        TICKLER_BENCH_POSTGRES_URL="$PG_BASE/postgres" timeout 900 "$bin" --bench "$@" 2>/dev/null |
            awk '/^(sqlite|postgres) +plain/ { if (seen[$0]++) print; next }
                 /^(-- phases|select|context|render|claim|lettre|SMTP|sum) / { print }' |
            sed "s/^/$label /"
    done
done
